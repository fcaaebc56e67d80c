// RFC 9728 OAuth Protected Resource Metadata for /mcp. The scopes come from
// the policy, so the document can never advertise a scope no tool needs.
import type { Config } from '../config.ts'
import { supportedScopes } from '../policy/decide.ts'
import { POLICY } from '../policy/policy.ts'

export function protectedResourceMetadata(config: Config) {
  return {
    resource: config.audience,
    authorization_servers: [config.issuer],
    scopes_supported: supportedScopes(POLICY),
    bearer_methods_supported: ['header'],
    resource_name: 'mcp-bastion',
  }
}
