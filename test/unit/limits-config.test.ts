// Limit-store settings: the backend is chosen by the UPSTASH_* pair, the fail
// mode is closed unless explicitly opened, and a half or malformed setting is
// refused by name (never a silent fallback to another store or to "open").
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config.ts'

const base = {
  AUTH_ISSUER: 'https://issuer.test',
  AUTH_AUDIENCE: 'https://bastion.test/mcp',
  AUTH_JWKS: JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] }),
}

describe('limit store configuration', () => {
  it('uses the embedded store and fails closed by default', () => {
    const r = parseConfig(base)
    expect(r.ok && r.config.limitStore).toEqual({ kind: 'embedded' })
    expect(r.ok && r.config.rateLimitFailMode).toBe('closed')
  })

  it('uses Upstash when both UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN are set', () => {
    const r = parseConfig({ ...base, UPSTASH_REDIS_REST_URL: 'https://eu1-x.upstash.io', UPSTASH_REDIS_REST_TOKEN: 'tok' })
    expect(r.ok && r.config.limitStore).toEqual({ kind: 'upstash', url: 'https://eu1-x.upstash.io', token: 'tok' })
  })

  it.each([
    [{ UPSTASH_REDIS_REST_URL: 'https://eu1-x.upstash.io' }, 'UPSTASH_REDIS_REST_TOKEN'],
    [{ UPSTASH_REDIS_REST_TOKEN: 'tok' }, 'UPSTASH_REDIS_REST_URL'],
    [{ UPSTASH_REDIS_REST_URL: 'http://redis.example.com', UPSTASH_REDIS_REST_TOKEN: 'tok' }, 'UPSTASH_REDIS_REST_URL'],
    [{ UPSTASH_REDIS_REST_URL: 'not a url', UPSTASH_REDIS_REST_TOKEN: 'tok' }, 'UPSTASH_REDIS_REST_URL'],
    [{ RATE_LIMIT_FAIL_MODE: 'opn' }, 'RATE_LIMIT_FAIL_MODE'],
    [{ RATE_LIMIT_FAIL_MODE: 'true' }, 'RATE_LIMIT_FAIL_MODE'],
  ])('refuses %o, naming %s', (extra, setting) => {
    const r = parseConfig({ ...base, ...extra })
    expect(r.ok).toBe(false)
    expect(!r.ok && r.setting).toBe(setting)
  })

  it('accepts RATE_LIMIT_FAIL_MODE=open only when spelled out (any case)', () => {
    const r = parseConfig({ ...base, RATE_LIMIT_FAIL_MODE: 'OPEN' })
    expect(r.ok && r.config.rateLimitFailMode).toBe('open')
  })

  it('treats empty UPSTASH values as unset (embedded store)', () => {
    const r = parseConfig({ ...base, UPSTASH_REDIS_REST_URL: '', UPSTASH_REDIS_REST_TOKEN: ' ' })
    expect(r.ok && r.config.limitStore).toEqual({ kind: 'embedded' })
  })
})
