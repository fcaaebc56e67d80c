// Rate and concurrency limits (issue #10) against the whole Worker and the
// real LimiterObject Durable Object (workerd via the workers pool, no mocks).
import { env } from 'cloudflare:workers'
import { describe, expect, it, vi } from 'vitest'
import { embeddedLimiter } from '../../src/limits/embedded.ts'
import { mintToken } from '../support/tokens.ts'
import { rpc, rpcBody } from '../support/worker.ts'

const call = async (token: string, id = 1) =>
  rpc('tools/call', { name: 'get_customer', arguments: { customerId: 'cus_001' } }, { token, id })

describe('per-sub tools/call rate (60 per minute)', () => {
  it('lets exactly 60 of 65 sequential calls through, then 429 with Retry-After; another sub is unaffected', async () => {
    const token = await mintToken({ role: 'admin', sub: `rate-${crypto.randomUUID()}` })
    const statuses: number[] = []
    let refused: Response | undefined
    for (let i = 0; i < 65; i++) {
      const res = await call(token, i)
      statuses.push(res.status)
      if (res.status === 429) refused ??= res
      else await res.body?.cancel()
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(60)
    expect(statuses.slice(60).every((s) => s === 429)).toBe(true)
    expect(refused).toBeDefined()
    const r = refused as Response
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect(r.headers.get('ratelimit-policy')).toContain('"tools_call";q=60;w=60')
    expect(r.headers.get('ratelimit')).toMatch(/^"tools_call";r=0;t=\d+$/)
    const body = (await rpcBody(r)) as { error: { code: number; message: string } }
    expect(body.error.message).toContain('rate limit exceeded')

    const other = await call(await mintToken({ role: 'admin', sub: `rate-${crypto.randomUUID()}` }))
    expect(other.status).toBe(200)
    await other.body?.cancel()
  }, 120_000)

  it('records a refused call in the audit log as rate_limited', async () => {
    const sub = `audit-${crypto.randomUUID()}`
    const token = await mintToken({ role: 'admin', sub })
    for (let i = 0; i < 61; i++) await (await call(token, i)).body?.cancel()
    // The audit row is written in waitUntil, after the response: wait for it.
    await vi.waitFor(async () => {
      const { results } = await env.DB.prepare('SELECT outcome FROM audit_log WHERE sub = ?1').bind(sub).all<{ outcome: string }>()
      expect(results.filter((r) => r.outcome === 'rate_limited')).toHaveLength(1)
      expect(results.filter((r) => r.outcome === 'ok')).toHaveLength(60)
    }, { timeout: 20_000, interval: 200 })
  }, 120_000)
})

describe('LimiterObject contract', () => {
  const limiter = embeddedLimiter(env.LIMITER, { timeoutMs: 1_000 })

  it('grants exactly 20 of 50 parallel acquires against a limit of 20', async () => {
    const key = `par-${crypto.randomUUID()}`
    const rates = [{ name: 'r', limit: 20, windowMs: 60_000 }]
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => limiter.acquire({ key, rates, concurrency: [], leaseId: `l${i}` })))
    expect(results.filter((r) => r.ok)).toHaveLength(20)
    const refused = results.find((r) => !r.ok)
    expect(refused).toMatchObject({ ok: false, rule: 'r', kind: 'rate', limit: 20 })
  })

  it('grants exactly 5 of 10 parallel concurrency leases; a released slot is reusable', async () => {
    const key = `conc-${crypto.randomUUID()}`
    const concurrency = [{ name: 'c', max: 5, ttlMs: 60_000 }]
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => limiter.acquire({ key, rates: [], concurrency, leaseId: `l${i}` })))
    const granted = results.filter((r) => r.ok)
    expect(granted).toHaveLength(5)
    expect(results.filter((r) => !r.ok && r.kind === 'concurrency')).toHaveLength(5)
    const first = granted[0]
    if (!first?.ok) throw new Error('no lease')
    await limiter.release(key, concurrency, first.leaseId)
    expect((await limiter.acquire({ key, rates: [], concurrency, leaseId: 'after' })).ok).toBe(true)
    expect((await limiter.acquire({ key, rates: [], concurrency, leaseId: 'one-more' })).ok).toBe(false)
  })

  it("frees a dead holder's slot once its lease expires", async () => {
    const key = `exp-${crypto.randomUUID()}`
    const concurrency = [{ name: 'c', max: 1, ttlMs: 2_000 }]
    expect((await limiter.acquire({ key, rates: [], concurrency, leaseId: 'dead' })).ok).toBe(true)
    expect((await limiter.acquire({ key, rates: [], concurrency, leaseId: 'waiting' })).ok).toBe(false)
    await new Promise((resolve) => setTimeout(resolve, 2_500))
    expect((await limiter.acquire({ key, rates: [], concurrency, leaseId: 'waiting' })).ok).toBe(true)
  })
})
