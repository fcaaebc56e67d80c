// shardOf (src/shard.ts): the owner of a key among `count` objects, for audit
// chains and limiter shards; and LIMIT_SHARDS in the configuration.
import { describe, expect, it } from 'vitest'
import { DEFAULT_LIMIT_SHARDS, MAX_LIMIT_SHARDS, parseConfig } from '../../src/config.ts'
import { shardOf } from '../../src/shard.ts'

describe('shardOf', () => {
  it('is FNV-1a of the UTF-8 bytes, mod count (stable across isolates and languages)', () => {
    // FNV-1a 32-bit test vectors: "" = 0x811c9dc5, "a" = 0xe40c292c, "foobar" = 0xbf9cf968
    expect(shardOf('a', 2 ** 31)).toBe(0xe40c292c % 2 ** 31)
    expect(shardOf('foobar', 1000)).toBe(0xbf9cf968 % 1000)
    expect(shardOf('', 7)).toBe(0x811c9dc5 % 7)
    expect(shardOf('ü', 1_000_003)).toBe(shardOf('\u00fc', 1_000_003))
  })

  it('spreads 2 000 agent subjects over 8 shards within ±30 % of even', () => {
    const counts = new Array<number>(8).fill(0)
    for (let i = 0; i < 2000; i++) counts[shardOf(`agent-${i}@clients`, 8)]!++
    for (const n of counts) expect(Math.abs(n - 250)).toBeLessThan(75)
  })

  it('puts everything on shard 0 of 1 and refuses a count that is not a positive integer', () => {
    expect(shardOf('anyone', 1)).toBe(0)
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => shardOf('x', bad)).toThrow(RangeError)
  })
})

describe('parseConfig reads LIMIT_SHARDS', () => {
  const base = {
    AUTH_ISSUER: 'https://issuer.test',
    AUTH_AUDIENCE: 'https://bastion.test/mcp',
    AUTH_JWKS: JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] }),
  }

  it(`defaults to ${DEFAULT_LIMIT_SHARDS} and accepts 1..${MAX_LIMIT_SHARDS}`, () => {
    const unset = parseConfig(base)
    expect(unset.ok && unset.config.limitShards).toBe(DEFAULT_LIMIT_SHARDS)
    for (const n of [1, 32, MAX_LIMIT_SHARDS]) {
      const r = parseConfig({ ...base, LIMIT_SHARDS: String(n) })
      expect(r.ok && r.config.limitShards).toBe(n)
    }
  })

  it('refuses anything else, naming the setting', () => {
    for (const LIMIT_SHARDS of ['0', '-2', '2.5', 'eight', String(MAX_LIMIT_SHARDS + 1)]) {
      expect(parseConfig({ ...base, LIMIT_SHARDS })).toEqual({ ok: false, setting: 'LIMIT_SHARDS', problem: `must be an integer from 1 to ${MAX_LIMIT_SHARDS}` })
    }
  })
})
