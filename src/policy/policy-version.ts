// The policy's version: the first 16 hex digits of SHA-256 over the policy
// table as JSON (POLICY_INPUT, the ALL_SCOPES marker written "*all*"),
// computed once per isolate. Resources carry it in `_meta` so that a client
// caching a read knows to drop it when the policy (scopes, tools, limits)
// changes with a deploy.
import { sha256Hex } from '../digest.ts'
import { ALL_SCOPES, POLICY_INPUT, type PolicyInput } from './policy.ts'

/** The `_meta` key every resource and every read result carries. */
export const POLICY_VERSION_META_KEY = 'io.bastion/policyVersion'

/** The JSON the version is taken over: `input` with ALL_SCOPES as "*all*". */
export function policyJson(input: PolicyInput): string {
  return JSON.stringify(input, (_key, value: unknown) => (value === ALL_SCOPES ? '*all*' : value))
}

/** First 16 hex digits of SHA-256(policyJson(input)). */
export async function computePolicyVersion(input: PolicyInput): Promise<string> {
  return (await sha256Hex(policyJson(input))).slice(0, 16)
}

let version: Promise<string> | undefined

/** The version of the policy in force, computed on first use and kept for the isolate. */
export function policyVersion(): Promise<string> {
  return (version ??= computePolicyVersion(POLICY_INPUT))
}
