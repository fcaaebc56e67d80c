// Rate and concurrency limits (issue #10) against the whole Worker and the
// real LimiterObject Durable Object (workerd via the workers pool, no mocks).
// The Limiter contract against both backends is test/integration/limits-contract.test.ts.
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { describe, expect, inject, it, vi } from 'vitest'
import worker from '../../src/index.ts'
import { POLICY } from '../../src/policy/policy.ts'
import { mintToken } from '../support/tokens.ts'
import { MCP_URL, rpc, rpcBody } from '../support/worker.ts'

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

/**
 * The real D1 binding, except that statements whose SQL matches `pattern`
 * wait for `open()` before they run: a tool that is slow for as long as the
 * test needs, with no clock involved.
 */
function gatedDb(pattern: RegExp): { db: D1Database; open(): void; waiting(): number } {
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  let waiting = 0
  const gated = (statement: D1PreparedStatement): D1PreparedStatement => new Proxy(statement, {
    get(target, property) {
      if (property === 'bind') return (...values: unknown[]) => gated(target.bind(...values))
      const value = Reflect.get(target, property, target) as unknown
      if (typeof value !== 'function') return value
      if (property === 'first' || property === 'all' || property === 'run' || property === 'raw') {
        return async (...args: unknown[]) => {
          waiting++
          await gate
          return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
        }
      }
      return (value as (...a: unknown[]) => unknown).bind(target)
    },
  })
  // The database and its sessions (execute_query reads through withSession).
  const wrap = <T extends object>(db: T): T => new Proxy(db, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...a: unknown[]) => unknown).bind(target)
      if (property === 'prepare') return (sql: string) => (pattern.test(sql) ? gated(fn(sql) as D1PreparedStatement) : fn(sql))
      if (property === 'withSession') return (...a: unknown[]) => wrap(fn(...a) as object)
      return fn
    },
  })
  return { db: wrap(env.DB), open: release, waiting: () => waiting }
}

interface Sent { status: number; text: string; headers: Headers }

/** One tools/call through the Worker with modified bindings; resolves once its waitUntil work (the lease release) is done. */
async function callWith(bindings: Record<string, unknown>, token: string, name: string, args: Record<string, unknown>): Promise<Sent> {
  const { sent, settled } = await sendWith(bindings, token, name, args)
  await settled
  return sent
}

/** Like callWith, but resolves with the response at once; `settled` is its waitUntil work. */
async function sendWith(bindings: Record<string, unknown>, token: string, name: string, args: Record<string, unknown>): Promise<{ sent: Sent; settled: Promise<void> }> {
  const ctx = createExecutionContext()
  const res = await worker.fetch(
    new Request(MCP_URL(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }),
    }),
    { ...env, ...bindings } as Env,
    ctx,
  )
  const text = await res.text()
  return { sent: { status: res.status, text, headers: res.headers }, settled: waitOnExecutionContext(ctx) }
}

const upstash = inject('upstash')
const backends = [
  { name: 'embedded', bindings: (): Record<string, unknown> => ({}) },
  ...(upstash === undefined
    ? []
    : [{ name: 'upstash', bindings: (): Record<string, unknown> => ({ UPSTASH_REDIS_REST_URL: upstash.url, UPSTASH_REDIS_REST_TOKEN: `${upstash.token}.worker` }) }]),
]

describe.each(backends)('concurrent tools/call per sub ($name backend)', ({ bindings }) => {
  it('runs exactly 5 of 10 parallel slow calls from one sub, refuses 5 with 429; afterwards new calls run', async () => {
    const token = await mintToken({ role: 'admin', sub: `conc-${crypto.randomUUID()}` })
    const slow = gatedDb(/SELECT id, name, company, email/)
    const calls = Array.from({ length: 10 }, () => callWith({ ...bindings(), DB: slow.db }, token, 'get_customer', { customerId: 'cus_001' }))
    const refused: Sent[] = []
    for (const call of calls) void call.then((sent) => { if (sent.status === 429) refused.push(sent) })
    // The 5 refusals answer while the 5 admitted calls are still inside the tool.
    await vi.waitFor(() => {
      expect(refused).toHaveLength(5)
      expect(slow.waiting()).toBe(5)
    }, { timeout: 20_000, interval: 20 })
    slow.open()
    const all = await Promise.all(calls)
    expect(all.filter((s) => s.status === 200)).toHaveLength(5)
    const r = refused[0]!
    expect(r.headers.get('retry-after')).toMatch(/^[1-5]$/)
    expect(r.headers.get('ratelimit-policy')).toContain('"concurrent";q=5')
    expect(r.text).toContain('too many concurrent calls (concurrent)')
    expect(r.text).toContain('-32029')
    // Every admitted call released its lease when it finished: 5 new calls run at once again.
    const again = await Promise.all(Array.from({ length: 5 }, () => callWith(bindings(), token, 'get_customer', { customerId: 'cus_001' })))
    expect(again.map((s) => s.status)).toEqual([200, 200, 200, 200, 200])
  })

  it('runs at most 1 execute_query per sub at once; other tools still run beside it', async () => {
    const token = await mintToken({ role: 'admin', sub: `sql-${crypto.randomUUID()}` })
    const slow = gatedDb(/gate_marker/)
    const query = { query: "SELECT name AS gate_marker FROM customers LIMIT 1" }
    const first = callWith({ ...bindings(), DB: slow.db }, token, 'execute_query', query)
    await vi.waitFor(() => expect(slow.waiting()).toBeGreaterThan(0), { timeout: 20_000, interval: 20 })
    const second = await callWith({ ...bindings(), DB: slow.db }, token, 'execute_query', query)
    expect(second.status).toBe(429)
    expect(second.text).toContain('concurrent_execute_query')
    const other = await callWith(bindings(), token, 'get_customer', { customerId: 'cus_001' })
    expect(other.status).toBe(200)
    slow.open()
    expect((await first).status).toBe(200)
    expect((await callWith(bindings(), token, 'execute_query', query)).status).toBe(200)
  })

  // The policy's execute_query limit is 10 s: the test shortens it to 50 ms
  // (the policy table is plain data read per call) and holds the query at the gate.
  it('holds the execute_query slot of a timed-out call until its D1 statement ends, then frees it', async () => {
    const token = await mintToken({ role: 'admin', sub: `timeout-${crypto.randomUUID()}` })
    const settings = POLICY.tools.get('execute_query')!
    const original = settings.timeoutMs
    const stuck = gatedDb(/gate_marker/)
    const query = { query: "SELECT name AS gate_marker FROM customers LIMIT 1" }
    settings.timeoutMs = 50
    let timedOut: { sent: Sent; settled: Promise<void> }
    try {
      timedOut = await sendWith({ ...bindings(), DB: stuck.db }, token, 'execute_query', query)
    } finally {
      settings.timeoutMs = original
    }
    expect(timedOut.sent.status).toBe(200)
    expect(timedOut.sent.text).toContain('timed out')
    // The caller was answered, but its statement still holds the database: no second one.
    expect(stuck.waiting()).toBeGreaterThan(0)
    const meanwhile = await callWith(bindings(), token, 'execute_query', query)
    expect(meanwhile.status).toBe(429)
    expect(meanwhile.text).toContain('concurrent_execute_query')
    // The statement ends; the lease goes with it, not at its TTL.
    stuck.open()
    await timedOut.settled
    const next = await callWith(bindings(), token, 'execute_query', query)
    expect(next.status).toBe(200)
    expect(next.text).not.toContain('timed out')
  })
})

describe.skipIf(upstash === undefined)('per-sub tools/call rate on the Upstash backend', () => {
  it('lets exactly 60 of 65 sequential calls through, then 429 with Retry-After; another sub is unaffected', async () => {
    const bindings = { UPSTASH_REDIS_REST_URL: upstash!.url, UPSTASH_REDIS_REST_TOKEN: `${upstash!.token}.worker` }
    // The sliding window weighs the previous minute's count: a burst that
    // straddles a minute boundary is not the case under test; run it again.
    let statuses: number[] = []
    for (let attempt = 0; attempt < 2; attempt++) {
      const start = Date.now()
      const token = await mintToken({ role: 'admin', sub: `rate-up-${crypto.randomUUID()}` })
      statuses = []
      for (let i = 0; i < 65; i++) statuses.push((await callWith(bindings, token, 'get_customer', { customerId: 'cus_001' })).status)
      if (Math.floor(start / 60_000) === Math.floor(Date.now() / 60_000)) break
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(60)
    expect(statuses.slice(60)).toEqual([429, 429, 429, 429, 429])
    const other = await callWith(bindings, await mintToken({ role: 'admin', sub: `rate-up-${crypto.randomUUID()}` }), 'get_customer', { customerId: 'cus_001' })
    expect(other.status).toBe(200)
  }, 120_000)
})
