// AUDIT_CHAINS: which chain a caller's rows go to (src/audit/chains.ts) and
// how the setting is parsed (src/config.ts).
import { describe, expect, it } from 'vitest'
import { chainName, chainOf, parseChainName } from '../../src/audit/chains.ts'
import { MAX_AUDIT_CHAINS, parseConfig } from '../../src/config.ts'

describe('chainOf spreads callers over chains by sub', () => {
  it('is stable: the same sub always lands on the same chain (pinned values, so a change of hash is noticed)', () => {
    expect(chainOf('alice', 1)).toBe(0)
    // FNV-1a 32-bit of "alice" is 0x872213e7 (computed independently); of "" it is the offset basis 0x811c9dc5.
    expect(chainOf('alice', 4)).toBe(0x872213e7 % 4)
    expect(chainOf('', 7)).toBe(0x811c9dc5 % 7)
    for (let i = 0; i < 50; i += 1) expect(chainOf(`user-${i}`, 8)).toBe(chainOf(`user-${i}`, 8))
  })

  it('uses every chain and stays within 0..N-1 for many callers', () => {
    for (const n of [2, 4, 16]) {
      const counts = new Array<number>(n).fill(0)
      for (let i = 0; i < 4000; i += 1) {
        const c = chainOf(`subject-${i}@idp.example`, n)
        expect(c).toBeGreaterThanOrEqual(0)
        expect(c).toBeLessThan(n)
        counts[c]! += 1
      }
      // No chain gets less than half or more than twice its share.
      for (const count of counts) {
        expect(count).toBeGreaterThan(4000 / n / 2)
        expect(count).toBeLessThan((4000 / n) * 2)
      }
    }
  })

  it('refuses a chain count that is not a positive integer', () => {
    for (const n of [0, -1, 1.5, Number.NaN]) expect(() => chainOf('alice', n)).toThrow(RangeError)
  })

  it('names sequencers chain-<n> and parses only that form back', () => {
    expect(chainName(3)).toBe('chain-3')
    expect(parseChainName('chain-3')).toBe(3)
    expect(parseChainName('chain-0')).toBe(0)
    for (const bad of [undefined, 'chain-', 'chain-03', 'chain--1', 'chain-1x', 'test-1', 'chain-1234567890']) expect(parseChainName(bad)).toBeUndefined()
  })
})

describe('parseConfig reads AUDIT_CHAINS', () => {
  const base = {
    AUTH_ISSUER: 'https://issuer.test',
    AUTH_AUDIENCE: 'https://bastion.test/mcp',
    AUTH_JWKS: JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] }),
  }

  it('defaults to one chain', () => {
    for (const AUDIT_CHAINS of [undefined, '']) {
      const r = parseConfig({ ...base, AUDIT_CHAINS })
      expect(r.ok && r.config.auditChains).toBe(1)
    }
  })

  it(`accepts 1..${MAX_AUDIT_CHAINS}`, () => {
    for (const n of [1, 4, MAX_AUDIT_CHAINS]) {
      const r = parseConfig({ ...base, AUDIT_CHAINS: String(n) })
      expect(r.ok && r.config.auditChains).toBe(n)
    }
  })

  it('refuses anything else, naming the setting', () => {
    for (const AUDIT_CHAINS of ['0', '-2', '2.5', 'four', String(MAX_AUDIT_CHAINS + 1)]) {
      expect(parseConfig({ ...base, AUDIT_CHAINS })).toEqual({ ok: false, setting: 'AUDIT_CHAINS', problem: `must be an integer from 1 to ${MAX_AUDIT_CHAINS}` })
    }
  })
})
