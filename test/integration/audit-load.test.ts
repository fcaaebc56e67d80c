// The audit log under concurrent load through the whole Worker (workerd, real
// D1, the real AuditSequencer objects): every completed tools/call has exactly
// one row, each chain is gap-free and verifies, and nothing failed or was
// retried on the way. Rows land after the response (the sequencer's group
// commit): the tests wait for them by polling D1 with a bound, the way an
// operator would see them, not through the sequencer's drain() barrier.
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { describe, expect, it, vi } from 'vitest'
import worker from '../../src/index.ts'
import { chainOf } from '../../src/audit/chains.ts'
import { listChains, verifyStoredChain } from '../../src/audit/store.ts'
import { testEnv, type TestEnv } from '../support/test-env.ts'
import { mintToken } from '../support/tokens.ts'

const BASE = testEnv(env)
const DB = BASE.DB

async function getCustomer(token: string, i: number, workerEnv: TestEnv): Promise<{ status: number; requestId: string; isError: boolean }> {
  const ctx = createExecutionContext()
  const res = await worker.fetch(new Request(BASE.AUTH_AUDIENCE, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: `cus_0${String((i % 40) + 1).padStart(2, '0')}` } } }),
  }), workerEnv, ctx)
  const text = await res.text()
  await waitOnExecutionContext(ctx)
  const json = text.split('\n').find((l) => l.startsWith('data: '))?.slice(6) ?? text
  const reply = JSON.parse(json) as { result?: { isError?: boolean } }
  return { status: res.status, requestId: res.headers.get('x-request-id') ?? '', isError: reply.result?.isError === true }
}

/** Rows of these request ids, polled until there are `n` (bounded: a hang guard, not a speed assertion). */
async function rowsFor(requestIds: string[], n: number): Promise<{ request_id: string; chain: number; seq: number }[]> {
  const wanted = new Set(requestIds)
  let rows: { request_id: string; chain: number; seq: number }[] = []
  await vi.waitFor(async () => {
    const { results } = await DB.prepare('SELECT request_id, chain, seq FROM audit_log').all<{ request_id: string; chain: number; seq: number }>()
    rows = results.filter((r) => wanted.has(r.request_id))
    expect(rows.length).toBeGreaterThanOrEqual(n)
  }, { timeout: 20_000, interval: 50 })
  return rows
}

function captureEvents(): { count: (event: string) => number; restore: () => void } {
  const seen = new Map<string, number>()
  const spies = (['log', 'warn', 'error'] as const).map((stream) =>
    vi.spyOn(console, stream).mockImplementation((...args: unknown[]) => {
      const event = /"event":"([a-z_]+)"/.exec(args.map(String).join(' '))?.[1]
      if (event) seen.set(event, (seen.get(event) ?? 0) + 1)
    }))
  return { count: (event) => seen.get(event) ?? 0, restore: () => spies.forEach((s) => s.mockRestore()) }
}

describe('audit under load', { timeout: 60_000 }, () => {
  it('500 concurrent tools/calls through the Worker give exactly 500 rows, and the chain verifies, with no audit write failed or retried', async () => {
    // 100 callers, 5 calls each (the per-sub concurrency limit is 5): per-sub
    // limits are not what this test is about. (500 distinct subs would also
    // create 500 limiter objects, which costs minutes in the test pool.)
    const subTokens = await Promise.all(Array.from({ length: 100 }, (_, i) => mintToken({ role: 'read-only', sub: `load-500-${i}` })))
    const tokens = Array.from({ length: 500 }, (_, i) => subTokens[i % 100]!)
    const logs = captureEvents()
    let sent: Awaited<ReturnType<typeof getCustomer>>[]
    try {
      sent = await Promise.all(tokens.map((t, i) => getCustomer(t, i, BASE)))
      const rows = await rowsFor(sent.map((s) => s.requestId), 500)
      expect(rows).toHaveLength(500)
      expect(new Set(rows.map((r) => r.request_id)).size).toBe(500)
      expect(new Set(rows.map((r) => r.chain))).toEqual(new Set([0]))
    } finally {
      logs.restore()
    }
    expect(sent.every((s) => s.status === 200 && !s.isError)).toBe(true)
    const verified = await verifyStoredChain(DB, { chain: 0 })
    expect(verified).toMatchObject({ ok: true })
    expect(verified.ok && verified.count).toBeGreaterThanOrEqual(500)
    expect(logs.count('audit_write_failed')).toBe(0)
    expect(logs.count('audit_flush_failed')).toBe(0)
    expect(logs.count('audit_commit_failed')).toBe(0)
    expect(logs.count('audit_head')).toBeGreaterThan(0)
  })

  it('with AUDIT_CHAINS=4, concurrent callers land on the chain of their sub: each of the 4 chains is gap-free and verifies', async () => {
    const sharded: TestEnv = { ...BASE, AUDIT_CHAINS: '4' } as TestEnv
    const subs = Array.from({ length: 24 }, (_, i) => `shard-sub-${i}`)
    const tokens = await Promise.all(subs.map((sub) => mintToken({ role: 'read-only', sub })))
    // Three calls per caller, all 72 at once.
    const plan = tokens.flatMap((token, s) => [0, 1, 2].map((k) => ({ token, sub: subs[s]!, i: s * 3 + k })))
    const logs = captureEvents()
    let sent: Awaited<ReturnType<typeof getCustomer>>[]
    let rows: Awaited<ReturnType<typeof rowsFor>>
    try {
      sent = await Promise.all(plan.map((p) => getCustomer(p.token, p.i, sharded)))
      rows = await rowsFor(sent.map((s) => s.requestId), plan.length)
    } finally {
      logs.restore()
    }
    expect(rows).toHaveLength(72)
    const chainOfRequest = new Map(rows.map((r) => [r.request_id, r.chain]))
    for (const [i, s] of sent.entries()) expect(chainOfRequest.get(s.requestId), `call ${i}`).toBe(chainOf(plan[i]!.sub, 4))
    const used = new Set(plan.map((p) => chainOf(p.sub, 4)))
    expect(used).toEqual(new Set([0, 1, 2, 3]))
    for (const chain of used) {
      expect(await verifyStoredChain(DB, { chain }), `chain ${chain}`).toMatchObject({ ok: true })
      const seqs = rows.filter((r) => r.chain === chain).map((r) => r.seq)
      expect(new Set(seqs).size).toBe(seqs.length)
    }
    expect(await listChains(DB)).toEqual(expect.arrayContaining([0, 1, 2, 3]))
    expect(logs.count('audit_write_failed')).toBe(0)
    expect(logs.count('audit_flush_failed')).toBe(0)
  })
})
