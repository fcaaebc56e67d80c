// RFC 9728 OAuth Protected Resource Metadata for /mcp. The scopes come from
// the policy, so the document can never advertise a scope no tool needs.
import type { Config } from '../config.ts'
import { supportedScopes } from '../policy/decide.ts'
import { POLICY } from '../policy/policy.ts'
import { DPOP_ALGORITHMS } from './dpop.ts'

export function protectedResourceMetadata(config: Config) {
  return {
    resource: config.audience,
    authorization_servers: [config.issuer],
    scopes_supported: supportedScopes(POLICY),
    bearer_methods_supported: ['header'],
    resource_name: 'mcp-bastion',
    // RFC 9449 §5.1 (AUTH_DPOP): the proof algorithms verified, and whether only DPoP-bound tokens are accepted.
    ...(config.dpop === 'off' ? {} : { dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS] }),
    ...(config.dpop === 'required' ? { dpop_bound_access_tokens_required: true } : {}),
  }
}
