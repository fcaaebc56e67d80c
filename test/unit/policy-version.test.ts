// The policy version (src/policy/policy-version.ts): 16 hex digits of SHA-256
// over the policy table, ALL_SCOPES written "*all*"; any change to the table
// changes it.
import { describe, expect, it } from 'vitest'
import { sha256Hex } from '../../src/digest.ts'
import { ALL_SCOPES, POLICY_INPUT } from '../../src/policy/policy.ts'
import { computePolicyVersion, policyJson, policyVersion } from '../../src/policy/policy-version.ts'

describe('policy version', () => {
  it('is the first 16 hex digits of SHA-256 of the policy JSON', async () => {
    expect(await computePolicyVersion(POLICY_INPUT)).toBe((await sha256Hex(policyJson(POLICY_INPUT))).slice(0, 16))
    expect(await policyVersion()).toMatch(/^[0-9a-f]{16}$/)
  })

  it('writes the ALL_SCOPES marker as "*all*" (a symbol would vanish from JSON)', () => {
    expect(POLICY_INPUT.roles['admin']).toBe(ALL_SCOPES)
    expect(JSON.parse(policyJson(POLICY_INPUT)).roles.admin).toBe('*all*')
  })

  it('is the same on every call of the isolate', async () => {
    expect(await policyVersion()).toBe(await policyVersion())
    expect(await policyVersion()).toBe(await computePolicyVersion(POLICY_INPUT))
  })

  it('changes when a limit of the policy changes', async () => {
    const retuned = { ...POLICY_INPUT, maxQueryRows: POLICY_INPUT.maxQueryRows + 1 }
    expect(await computePolicyVersion(retuned)).not.toBe(await computePolicyVersion(POLICY_INPUT))
  })

  it('changes when a role is granted a scope', async () => {
    const roles = { ...POLICY_INPUT.roles, 'read-only': [...(POLICY_INPUT.roles['read-only'] as string[]), 'sql:read'] }
    expect(await computePolicyVersion({ ...POLICY_INPUT, roles })).not.toBe(await computePolicyVersion(POLICY_INPUT))
  })
})
