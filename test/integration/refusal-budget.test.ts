// Refusals are charged and compact (issue #21, item 4), against the real
// AuditSequencer and D1. Through the whole Worker: a read-only token flooding
// execute_query with 4 KB arguments (403 each), and a flood of 429s, write at
// most refusalBudget.limit rows plus one aggregate per outcome, with compact
// arguments, and the sum of coalesce(count, 1) is exactly the number of calls.
// At the sequencer: many refusals at once still count exactly, the open
// aggregate and the spent budget survive a restart of the object, the alarm
// seals an aggregate when its window closes, another sub keeps its own budget,
// and the chain verifies, aggregate rows included.
import { createExecutionContext, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import worker from '../../src/index.ts'
import type { AuditRecord, RefusalOutcome } from '../../src/audit/chain.ts'
import { AuditSequencer } from '../../src/audit/sequencer.ts'
import { verifyStoredChain } from '../../src/audit/store.ts'
import { sequencer } from '../../src/audit/writer.ts'
import { POLICY } from '../../src/policy/policy.ts'
import { testEnv } from '../support/test-env.ts'
import { mintToken } from '../support/tokens.ts'

const BASE = testEnv(env)
const DB = BASE.DB
const MCP = BASE.AUTH_AUDIENCE
const LIMIT = POLICY.refusalBudget.limit

interface Row {
  seq: number
  request_id: string
  sub: string
  outcome: string
  http_status: number
  error_code: string | null
  input_json: string | null
  input_bytes: number | null
  input_sha256: string | null
  count: number | null
  first_request_id: string | null
  last_request_id: string | null
}

const bytes = (text: string | null) => new TextEncoder().encode(text ?? '').byteLength

async function rowsOf(sub: string, chain = 0): Promise<Row[]> {
  const { results } = await DB.prepare(`SELECT seq, request_id, sub, outcome, http_status, error_code, input_json, input_bytes, input_sha256,
    count, first_request_id, last_request_id FROM audit_log WHERE chain = ?1 AND sub = ?2 ORDER BY seq`).bind(chain, sub).all<Row>()
  return results
}

/** Refused calls the rows stand for, per outcome: a single row counts 1, an aggregate its `count`. */
function counted(rows: Row[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const row of rows) out[row.outcome] = (out[row.outcome] ?? 0) + (row.count ?? 1)
  return out
}

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0)

// ---------------------------------------------------------------------------
// Through the Worker

let nextId = 1

/** One tools/call through the Worker; resolves once its audit record reached the sequencer. */
async function call(token: string, name: string, args: Record<string, unknown>): Promise<{ status: number; requestId: string }> {
  const ctx = createExecutionContext()
  const res = await worker.fetch(new Request(MCP, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-11-25',
      authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name, arguments: args } }),
  }), BASE, ctx)
  await res.text()
  await waitOnExecutionContext(ctx)
  return { status: res.status, requestId: res.headers.get('x-request-id') ?? '' }
}

/** `n` calls, `parallel` at a time. */
async function flood(n: number, parallel: number, send: () => Promise<{ status: number; requestId: string }>) {
  const sent: { status: number; requestId: string }[] = []
  for (let i = 0; i < n; i += parallel) {
    sent.push(...await Promise.all(Array.from({ length: Math.min(parallel, n - i) }, send)))
  }
  return sent
}

const uniqueSub = (label: string) => `refusal-${label}-${crypto.randomUUID().slice(0, 8)}`
const fourKb = (label: string) => `SELECT * FROM customers WHERE name = '${label}' -- ${'x'.repeat(4096)}`

async function settled(): Promise<void> {
  expect(await sequencer(BASE).drain(), 'audit rows still pending in the sequencer outbox').toBe(0)
}

describe('a refusal flood through the Worker writes a bounded number of rows and counts every call', () => {
  it('300 execute_query calls of a read-only token with a 4 KB argument: at most budget + 1 rows per outcome, each <= 256 bytes of arguments, and the counts sum to exactly 300', async () => {
    const sub = uniqueSub('flood')
    const token = await mintToken({ role: 'read-only', sub })
    const sent = await flood(300, 25, () => call(token, 'execute_query', { query: fourKb(sub) }))
    await settled()
    const refusedStatuses = new Set(sent.map((s) => s.status))
    expect([...refusedStatuses].every((s) => s === 403 || s === 429), [...refusedStatuses].join(',')).toBe(true)
    const rows = await rowsOf(sub)
    const outcomes = new Set(rows.map((r) => r.outcome))
    expect(rows.length).toBeLessThanOrEqual(LIMIT + outcomes.size)
    expect(rows.filter((r) => r.count === null)).toHaveLength(LIMIT)
    expect(sum(counted(rows))).toBe(300)
    for (const row of rows) expect(bytes(row.input_json)).toBeLessThanOrEqual(256)
    const input = JSON.stringify({ query: fourKb(sub) })
    for (const row of rows.filter((r) => r.count === null)) {
      expect(row.input_bytes).toBe(bytes(input))
      expect(row.input_sha256).toMatch(/^[0-9a-f]{64}$/)
    }
    // Every request id is accounted for: single rows by request_id, aggregates by their first and last.
    const ids = sent.map((s) => s.requestId)
    const singles = new Set(rows.filter((r) => r.count === null).map((r) => r.request_id))
    const folded = ids.filter((id) => !singles.has(id))
    expect(folded).toHaveLength(300 - LIMIT)
    for (const aggregate of rows.filter((r) => r.count !== null)) {
      expect(aggregate).toMatchObject({ input_json: null, input_bytes: null, input_sha256: null, request_id: aggregate.first_request_id })
      expect(folded).toContain(aggregate.first_request_id)
      expect(folded).toContain(aggregate.last_request_id)
    }
    // Another caller's refusal in the same minute still gets its own row.
    const bystander = uniqueSub('bystander')
    const other = await call(await mintToken({ role: 'read-only', sub: bystander }), 'execute_query', { query: fourKb(bystander) })
    await settled()
    expect(await rowsOf(bystander)).toMatchObject([{ request_id: other.requestId, outcome: 'denied', count: null }])
    expect(await verifyStoredChain(DB)).toMatchObject({ ok: true })
  })

  it('rate-limited calls are charged too: the 429s past the budget fold into one aggregate, the calls that ran keep a row each', async () => {
    const sub = uniqueSub('429')
    const token = await mintToken({ role: 'read-only', sub })
    // get_customer of an unknown id: a tool_error while the rate limit lets it through, a 429 after.
    const sent = await flood(300, 10, () => call(token, 'get_customer', { customerId: 'cus_999' }))
    await settled()
    const limited = sent.filter((s) => s.status === 429).length
    expect(limited).toBeGreaterThan(LIMIT)
    const rows = await rowsOf(sub)
    const counts = counted(rows)
    expect(counts['rate_limited']).toBe(limited)
    expect(sum(counts)).toBe(300)
    const ran = rows.filter((r) => r.outcome !== 'rate_limited')
    expect(ran).toHaveLength(300 - limited)
    for (const row of ran) expect([row.outcome, row.count, row.input_bytes]).toEqual(['tool_error', null, null])
    const refusals = rows.filter((r) => r.outcome === 'rate_limited')
    expect(refusals).toHaveLength(LIMIT + 1)
    for (const row of refusals) expect(bytes(row.input_json)).toBeLessThanOrEqual(256)
    expect(refusals.at(-1)).toMatchObject({ count: limited - LIMIT, http_status: 429 })
  })

  it('200 refused calls at once are counted exactly', async () => {
    const sub = uniqueSub('burst')
    const token = await mintToken({ role: 'read-only', sub })
    await flood(200, 200, () => call(token, 'execute_query', { query: fourKb(sub) }))
    await settled()
    const rows = await rowsOf(sub)
    expect(sum(counted(rows))).toBe(200)
    expect(rows.filter((r) => r.count === null)).toHaveLength(LIMIT)
    expect(rows.length).toBeLessThanOrEqual(LIMIT + 3)
  })
})

// ---------------------------------------------------------------------------
// At the sequencer

/** A chain no other test uses, and its sequencer. */
function freshChain(): { chain: number; seq: DurableObjectStub<AuditSequencer> } {
  const chain = 1000 + Math.floor(Math.random() * 100_000_000)
  return { chain, seq: env.AUDIT_SEQUENCER.get(env.AUDIT_SEQUENCER.idFromName(`chain-${chain}`)) }
}

function refusal(sub: string, i: number, outcome: RefusalOutcome = 'denied'): AuditRecord {
  return {
    ts: new Date().toISOString(),
    request_id: `${sub}-${i}`,
    sub,
    token_id: 'jti-refusal',
    method: 'tools/call',
    tool: 'execute_query',
    outcome,
    http_status: outcome === 'rate_limited' ? 429 : outcome === 'denied' ? 403 : 200,
    duration_ms: 1,
    input_json: '{"query":"SELECT 1"}',
    input_bytes: 20,
    input_sha256: 'e'.repeat(64),
    error_code: outcome === 'denied' ? 'insufficient_scope' : outcome,
  }
}

/** Lowers the refusal budget for one test (the policy is plain data, read per refusal). */
function budget(limit: number, windowSeconds: number): void {
  const original = { ...POLICY.refusalBudget }
  Object.assign(POLICY.refusalBudget, { limit, windowSeconds })
  onTestFinished(() => void Object.assign(POLICY.refusalBudget, original))
}

describe('the sequencer counts each sub’s refusals exactly', () => {
  it('refusals arriving all at once: the first `limit` are rows, the rest one aggregate per outcome, and the counts are exact', async () => {
    const { chain, seq } = freshChain()
    const outcomes: RefusalOutcome[] = ['denied', 'rate_limited', 'invalid_input']
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => seq.refuse(refusal('burst', i, outcomes[i % 3]))))
    expect(results.filter((r) => 'seq' in r)).toHaveLength(LIMIT)
    expect(await seq.drain()).toBe(0)
    const rows = await rowsOf('burst', chain)
    expect(rows).toHaveLength(LIMIT + 3)
    expect(counted(rows)).toEqual({ denied: 100, rate_limited: 100, invalid_input: 100 })
    expect(await verifyStoredChain(DB, { chain })).toMatchObject({ ok: true, count: LIMIT + 3 })
  })

  it('an aggregate names its first and last refusal, and is NULL where its refusals differ', async () => {
    const { chain, seq } = freshChain()
    budget(1, 60)
    await seq.refuse(refusal('mixed', 0))
    await seq.refuse(refusal('mixed', 1))
    await seq.refuse({ ...refusal('mixed', 2), tool: 'get_customer', error_code: 'forbidden' })
    await seq.refuse(refusal('mixed', 3))
    expect(await seq.drain()).toBe(0)
    const rows = await rowsOf('mixed', chain)
    expect(rows).toHaveLength(2)
    expect(rows[1]).toMatchObject({
      request_id: 'mixed-1', count: 3, first_request_id: 'mixed-1', last_request_id: 'mixed-3', outcome: 'denied', http_status: 403,
      error_code: null, input_json: null, input_bytes: null, input_sha256: null,
    })
    const tool = await DB.prepare('SELECT tool FROM audit_log WHERE chain = ?1 AND seq = ?2').bind(chain, rows[1]!.seq).first<string | null>('tool')
    expect(tool).toBeNull()
  })

  it('another sub is unaffected: its refusals get rows of their own while one sub is past its budget', async () => {
    const { chain, seq } = freshChain()
    budget(5, 60)
    for (let i = 0; i < 20; i += 1) await seq.refuse(refusal('noisy', i))
    for (let i = 0; i < 5; i += 1) expect(await seq.refuse(refusal('quiet', i))).toHaveProperty('seq')
    expect(await seq.append({ ...refusal('noisy', 99), outcome: 'ok', http_status: 200, error_code: null })).toHaveProperty('seq')
    expect(await seq.drain()).toBe(0)
    expect((await rowsOf('quiet', chain)).map((r) => r.count)).toEqual([null, null, null, null, null])
    const noisy = await rowsOf('noisy', chain)
    expect(noisy.map((r) => r.count)).toEqual([null, null, null, null, null, null, 15]) // 5 refusals, the ok row, then the aggregate
    expect(noisy.map((r) => r.outcome).filter((o) => o === 'ok')).toHaveLength(1)
  })

  it('a restart with an open aggregate loses nothing: the aggregate and the spent budget are in the object’s storage', async () => {
    const { chain, seq } = freshChain()
    budget(3, 60)
    for (let i = 0; i < 10; i += 1) await seq.refuse(refusal('restart', i))
    await runInDurableObject(seq, async (_old: AuditSequencer, state) => {
      // A new instance over the same storage, as after an eviction or a deploy.
      const again = new AuditSequencer(state, env)
      expect(await again.refuse(refusal('restart', 10))).toEqual({ folded: 8 })
      expect(await again.drain()).toBe(0)
    })
    const rows = await rowsOf('restart', chain)
    expect(rows.map((r) => r.count)).toEqual([null, null, null, 8])
    expect(rows[3]).toMatchObject({ first_request_id: 'restart-3', last_request_id: 'restart-10' })
    expect(await verifyStoredChain(DB, { chain })).toMatchObject({ ok: true, count: 4 })
  })

  it('the alarm seals an aggregate when its window closes, and the next window has a fresh budget', async () => {
    const { chain, seq } = freshChain()
    budget(2, 1)
    for (let i = 0; i < 6; i += 1) await seq.refuse(refusal('window', i))
    // The two rows land with the next flush; the aggregate waits for its window to close.
    await vi.waitFor(async () => expect((await rowsOf('window', chain)).map((r) => r.count)).toEqual([null, null]), { timeout: 10_000, interval: 50 })
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await runDurableObjectAlarm(seq)
    await vi.waitFor(async () => expect((await rowsOf('window', chain)).map((r) => r.count)).toEqual([null, null, 4]), { timeout: 10_000, interval: 50 })
    expect(await seq.refuse(refusal('window', 6))).toHaveProperty('seq')
    expect(await seq.drain()).toBe(0)
    expect((await rowsOf('window', chain)).map((r) => r.count)).toEqual([null, null, 4, null])
    expect(await verifyStoredChain(DB, { chain })).toMatchObject({ ok: true, count: 4 })
  })
})
