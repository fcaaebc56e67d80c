// The Upstash REST proxy (test infrastructure) against a real redis-server,
// driven by the real @upstash/redis and @upstash/ratelimit clients.
import { Ratelimit } from '@upstash/ratelimit'
import { Redis, type RedisConfigNodejs } from '@upstash/redis'
import { describe, expect, inject, it } from 'vitest'
import { stripUnknownShebangFlags } from '../support/upstash-proxy.ts'

const target = inject('upstash')

describe('stripUnknownShebangFlags', () => {
  it('drops flags stock Redis does not know and keeps the ones it does', () => {
    expect(stripUnknownShebangFlags('#!lua flags=allow-key-locking\nreturn 1')).toBe('#!lua\nreturn 1')
    expect(stripUnknownShebangFlags('#!lua flags=no-writes,allow-key-locking\nreturn 1')).toBe('#!lua flags=no-writes\nreturn 1')
    expect(stripUnknownShebangFlags('return 1')).toBe('return 1')
  })
})

describe.skipIf(target === undefined)('Upstash REST proxy over redis-server', () => {
  const redis = (label: string, extra: Partial<RedisConfigNodejs> = {}) =>
    new Redis({ url: target!.url, token: `${target!.token}.${label}`, retry: { retries: 0 }, enableTelemetry: false, ...extra })
  const key = (name: string) => `proxy-test:${name}:${crypto.randomUUID()}`

  it('refuses a request without the token', async () => {
    const res = await fetch(target!.url, { method: 'POST', headers: { authorization: 'Bearer wrong' }, body: '["PING"]' })
    expect(res.status).toBe(401)
  })

  it('round-trips binary-unsafe and unicode strings under base64 encoding, nested arrays too', async () => {
    const r = redis('b64')
    const k = key('list')
    await r.rpush(k, 'plain', 'ünïcødé ✓', '{"json":true}', 'a\r\nb')
    expect(await r.lrange(k, 0, -1)).toEqual(['plain', 'ünïcødé ✓', { json: true }, 'a\r\nb'])
    const z = key('z')
    await r.zadd(z, { score: 1, member: 'one' }, { score: 2, member: 'two' })
    expect(await r.zrange(z, 0, -1, { withScores: true })).toEqual(['one', 1, 'two', 2])
    expect(await r.eval('return {KEYS[1], {ARGV[1], 7}}', ['k€y'], ['ärg'])).toEqual(['k€y', ['ärg', 7]])
  })

  it('answers /pipeline with one entry per command, errors in place', async () => {
    const r = redis('pipe')
    const k = key('n')
    const p = r.pipeline()
    p.set(k, 'x')
    p.incr(k)
    p.get(k)
    const results = await p.exec({ keepErrors: true })
    expect(results[0]).toMatchObject({ result: 'OK' })
    expect(results[1]!.error).toMatch(/not an integer/)
    expect(results[2]).toMatchObject({ result: 'x' })
  })

  it('runs /multi-exec atomically: 50 concurrent transactions each see their own two increments together', async () => {
    const r = redis('multi')
    const k = key('counter')
    const results = await Promise.all(Array.from({ length: 50 }, () => r.multi().incr(k).incr(k).exec<[number, number]>()))
    for (const [a, b] of results) expect(b).toBe(a + 1)
    expect(new Set(results.map(([a]) => a)).size).toBe(50)
    expect(Number(await r.get(k))).toBe(100)
  })

  it('serves @upstash/ratelimit scripts (shebang flags, EVALSHA after NOSCRIPT), exact under 50 parallel callers', async () => {
    const limiter = new Ratelimit({ redis: redis('rl'), limiter: Ratelimit.slidingWindow(20, '1 h'), prefix: key('rl'), ephemeralCache: false, timeout: 5_000 })
    const id = 'someone'
    const results = await Promise.all(Array.from({ length: 50 }, () => limiter.limit(id)))
    expect(results.filter((r) => r.reason === 'timeout')).toHaveLength(0)
    expect(results.filter((r) => r.success)).toHaveLength(20)
  })

  it('counts requests per token label', async () => {
    const label = `count-${crypto.randomUUID()}`
    const r = redis(label, { enableAutoPipelining: true })
    await Promise.all([r.set(key('a'), 1), r.set(key('b'), 2), r.get(key('c'))])
    const stats = (await (await fetch(`${target!.url}/__stats/${label}`)).json()) as Record<string, number>
    expect(stats).toEqual({ '/pipeline': 2 }) // the read and the write pipelines of @upstash/redis
  })
})
