// The audit log through the whole Worker (workerd + a real D1): every outcome
// of an authenticated tools/call is one row, nothing else is a row, 50
// concurrent calls keep the chain gap-free, a mutation whose audit row cannot
// be written is not applied, neither rows nor log lines carry a token or
// personal data, failures raise one signed alert, and retention keeps the
// chain verifiable.
//
// The Worker is driven with `worker.fetch(request, env, ctx)` so each test can
// wait for the waitUntil appends (waitOnExecutionContext: the chain's
// AuditSequencer has accepted them) and then for the sequencer's group commit
// (its drain() barrier) before reading audit_log, and can hand the Worker a
// modified env (a DB binding that fails on one tool's query, alert settings,
// retention). The sequencer writes through its own, real DB binding. Every
// test starts from an empty audit log: the previous test's rows are drained,
// deleted, and the sequencer reloads its head from D1 (resync), as an
// operator would after restoring D1. Business rows a test changes are restored.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import type { Order as OrderRow } from '../../src/db/queries.ts'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import worker from '../../src/index.ts'
import { alertThrottle } from '../../src/audit/writer.ts'
import { ALERT_SIGNATURE_HEADER, verifyAlertSignature } from '../../src/audit/alert.ts'
import type { AuditRecord } from '../../src/audit/chain.ts'
import { sha256Hex } from '../../src/digest.ts'
import { appendAudit, readCheckpoint, verifyStoredChain } from '../../src/audit/store.ts'
import { redactedJson } from '../../src/audit/record.ts'
import { sequencer } from '../../src/audit/writer.ts'
import { POLICY } from '../../src/policy/policy.ts'
import { testEnv, type TestEnv } from '../support/test-env.ts'
import { mintToken } from '../support/tokens.ts'

const BASE = testEnv(env)
const DB = BASE.DB
const MCP = BASE.AUTH_AUDIENCE

// ---------------------------------------------------------------------------
// Talking to the Worker

interface ToolResult {
  isError?: boolean
  content: { type: string; text: string }[]
  structuredContent?: Record<string, unknown>
}

interface RpcReply {
  jsonrpc: string
  id: unknown
  result?: ToolResult & Record<string, unknown>
  error?: { code: number; message: string }
}

interface Sent {
  status: number
  requestId: string
  headers: Headers
  text: string
  reply: RpcReply | undefined
}

interface SendOptions {
  token?: string
  env?: TestEnv
  headers?: Record<string, string>
}

function parseReply(text: string, contentType: string | null): RpcReply | undefined {
  if (text === '') return undefined
  const json = contentType?.includes('text/event-stream') ? text.split('\n').find((l) => l.startsWith('data: '))?.slice(6) : text
  try {
    return json === undefined ? undefined : (JSON.parse(json) as RpcReply)
  } catch {
    return undefined
  }
}

/** POSTs one JSON-RPC message (a 2025-11-25 client) and waits for the Worker's waitUntil work. */
async function post(message: Record<string, unknown>, opts: SendOptions = {}): Promise<Sent> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25',
    ...opts.headers,
  }
  if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`
  const ctx = createExecutionContext()
  const res = await worker.fetch(new Request(MCP, { method: 'POST', headers, body: JSON.stringify(message) }), opts.env ?? BASE, ctx)
  const text = await res.text()
  await waitOnExecutionContext(ctx)
  return { status: res.status, requestId: res.headers.get('x-request-id') ?? '', headers: res.headers, text, reply: parseReply(text, res.headers.get('content-type')) }
}

let nextId = 1

function call(token: string, name: string, args: Record<string, unknown>, opts: Omit<SendOptions, 'token'> = {}): Promise<Sent> {
  return post({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name, arguments: args } }, { ...opts, token })
}

function toolResult(sent: Sent): ToolResult {
  expect(sent.status).toBe(200)
  const result = sent.reply?.result
  expect(result, sent.text).toBeDefined()
  return result!
}

const uniqueSub = (label: string) => `audit-${label}-${crypto.randomUUID().slice(0, 8)}`

// ---------------------------------------------------------------------------
// Reading D1

interface AuditRow {
  seq: number
  ts: string
  request_id: string
  sub: string
  token_id: string
  client_name: string | null
  client_version: string | null
  method: string
  tool: string | null
  outcome: string
  http_status: number
  duration_ms: number
  input_json: string | null
  output_bytes: number | null
  output_sha256: string | null
  output_excerpt: string | null
  error_code: string | null
  prev_hash: string
  hash: string
}


const ORDER_COLUMNS = 'id, customer_id, product_id, quantity, total_cents, status, note, created_at, updated_at'

/** The chain's sequencer, as the Worker addresses it. */
const chain = () => sequencer(BASE)

/** Waits until every row the sequencer accepted is in D1 (fails if D1 refuses them). */
async function settled(): Promise<void> {
  expect(await chain().drain(), 'audit rows still pending in the sequencer outbox').toBe(0)
}

async function auditRows(): Promise<AuditRow[]> {
  await settled()
  return (await DB.prepare('SELECT * FROM audit_log ORDER BY seq').all<AuditRow>()).results
}

async function pendingOrders(n: number): Promise<OrderRow[]> {
  const { results } = await DB.prepare(`SELECT ${ORDER_COLUMNS} FROM orders WHERE status = 'pending' ORDER BY random() LIMIT ?1`).bind(n).all<OrderRow>()
  expect(results).toHaveLength(n)
  return results
}

async function orderRow(id: string): Promise<OrderRow | null> {
  return DB.prepare(`SELECT ${ORDER_COLUMNS} FROM orders WHERE id = ?1`).bind(id).first<OrderRow>()
}

async function restoreOrders(orders: OrderRow[]): Promise<void> {
  await DB.batch(orders.map((o) => DB.prepare('UPDATE orders SET status = ?2, note = ?3, updated_at = ?4 WHERE id = ?1').bind(o.id, o.status, o.note, o.updated_at)))
}

async function ticketCount(): Promise<number> {
  return (await DB.prepare('SELECT count(*) AS n FROM tickets').first<number>('n')) ?? -1
}

async function deleteTickets(ids: string[]): Promise<void> {
  if (ids.length) await DB.batch(ids.map((id) => DB.prepare('DELETE FROM tickets WHERE id = ?1').bind(id)))
}

function ticketIdOf(sent: Sent): string {
  const ticket = toolResult(sent).structuredContent?.['ticket'] as { id: string } | undefined
  expect(ticket?.id).toMatch(/^tkt_/)
  return ticket!.id
}

// ---------------------------------------------------------------------------
// Modified bindings

/**
 * The real D1 binding, except that statements whose SQL matches `pattern`
 * fail (`throw`) or answer only after `delayMs`. The audit appends use the
 * same binding, so the pattern must match only the tool's own query.
 */
function dbWith(pattern: RegExp, fault: { throw: string } | { delayMs: number; onDone?: () => void }): D1Database {
  const onDone = 'delayMs' in fault ? fault.onDone : undefined
  const delayed = (statement: D1PreparedStatement, ms: number): D1PreparedStatement => new Proxy(statement, {
    get(target, property) {
      if (property === 'bind') return (...values: unknown[]) => delayed(target.bind(...values), ms)
      const value = Reflect.get(target, property, target) as unknown
      if (typeof value !== 'function') return value
      if (property === 'first' || property === 'all' || property === 'run' || property === 'raw') {
        return async (...args: unknown[]) => {
          await new Promise((resolve) => setTimeout(resolve, ms))
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
          } finally {
            onDone?.()
          }
        }
      }
      return (value as (...a: unknown[]) => unknown).bind(target)
    },
  })
  return new Proxy(DB, {
    get(target, property) {
      if (property === 'prepare') {
        return (sql: string) => {
          const statement = target.prepare(sql)
          if (!pattern.test(sql)) return statement
          if ('throw' in fault) throw new Error(fault.throw)
          return delayed(statement, fault.delayMs)
        }
      }
      const value = Reflect.get(target, property, target) as unknown
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    },
  })
}

/** The real sequencer binding, recording every commit RPC the Worker sends it. */
function watchedSequencer(commits: Promise<unknown>[]): TestEnv['AUDIT_SEQUENCER'] {
  const namespace = BASE.AUDIT_SEQUENCER
  return new Proxy(namespace, {
    get(target, property) {
      if (property === 'get') {
        return (id: DurableObjectId) => {
          const stub = target.get(id)
          return new Proxy(stub, {
            get(inner, name) {
              if (name === 'commit') {
                return (...args: Parameters<typeof stub.commit>) => {
                  const pending = inner.commit(...args)
                  commits.push(Promise.resolve(pending).catch(() => undefined))
                  return pending
                }
              }
              if (name === 'append') return (...args: Parameters<typeof stub.append>) => inner.append(...args)
              return Reflect.get(inner, name, inner) as unknown
            },
          })
        }
      }
      const value = Reflect.get(target, property, target) as unknown
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    },
  })
}

// ---------------------------------------------------------------------------
// Console capture (the Worker's structured log lines)

type LogLine = { stream: 'log' | 'warn' | 'error'; text: string }

function captureConsole(): { lines: LogLine[]; restore: () => void } {
  const lines: LogLine[] = []
  const spies = (['log', 'warn', 'error'] as const).map((stream) =>
    vi.spyOn(console, stream).mockImplementation((...args: unknown[]) => {
      lines.push({ stream, text: args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ') })
    }),
  )
  return { lines, restore: () => spies.forEach((s) => s.mockRestore()) }
}

function events(lines: LogLine[], event: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = []
  for (const line of lines) {
    try {
      const parsed = JSON.parse(line.text) as Record<string, unknown>
      if (parsed['event'] === event) out.push(parsed)
    } catch {
      // not one of the Worker's JSON lines
    }
  }
  return out
}

// ---------------------------------------------------------------------------

/** The digest an audit row holds: of the output the client received, redacted by the tool's policy (issue #13). */
function redactedDigest(tool: string, output: string): Promise<string> {
  return sha256Hex(redactedJson(output, new Set(POLICY.tools.get(tool)!.sensitiveFields)))
}

beforeEach(async () => {
  await settled()
  await DB.batch([DB.prepare('DELETE FROM audit_log'), DB.prepare('DELETE FROM audit_checkpoint')])
  expect(await chain().resync()).toEqual({ ok: true, head: { seq: 0, hash: '0'.repeat(64) } })
})

describe('every outcome of an authenticated tools/call is exactly one row', () => {
  it('ok: get_customer is recorded with status 200, no error code, and the digest of what the client received', async () => {
    const sub = uniqueSub('ok')
    const sent = await call(await mintToken({ role: 'read-only', sub }), 'get_customer', { customerId: 'cus_001' })
    const result = toolResult(sent)
    expect(result.isError).toBeFalsy()
    const rows = await auditRows()
    expect(rows).toHaveLength(1)
    const text = result.content[0]!.text
    expect(rows[0]).toMatchObject({
      seq: 1, request_id: sent.requestId, sub, method: 'tools/call', tool: 'get_customer', outcome: 'ok', http_status: 200, error_code: null,
      input_json: '{"customerId":"cus_001"}', output_bytes: new TextEncoder().encode(text).byteLength, output_sha256: await redactedDigest('get_customer', text),
    })
    expect(rows[0]!.token_id).toBeTruthy()
    expect(Date.parse(rows[0]!.ts)).toBeGreaterThan(Date.now() - 60_000)
  })

  it('tool_error: get_customer of an unknown id is recorded with error_code not_found', async () => {
    const sent = await call(await mintToken({ role: 'read-only', sub: uniqueSub('tool-error') }), 'get_customer', { customerId: 'cus_999' })
    expect(toolResult(sent).isError).toBe(true)
    const rows = await auditRows()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ request_id: sent.requestId, tool: 'get_customer', outcome: 'tool_error', http_status: 200, error_code: 'not_found', output_sha256: null })
  })

  it('invalid_input: an argument the schema refuses is recorded with error_code invalid_arguments', async () => {
    const sent = await call(await mintToken({ role: 'read-only', sub: uniqueSub('bad-arg') }), 'get_customer', { customerId: 42 })
    const result = toolResult(sent)
    expect(result.isError).toBe(true)
    expect(result.content[0]!.text).toContain('customerId')
    const rows = await auditRows()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ request_id: sent.requestId, tool: 'get_customer', outcome: 'invalid_input', http_status: 200, error_code: 'invalid_arguments', input_json: '{"customerId":42}' })
  })

  it('invalid_input: a call of an unknown tool is recorded with error_code unknown_tool', async () => {
    const sent = await call(await mintToken({ role: 'admin', sub: uniqueSub('unknown-tool') }), 'drop_database', { really: true })
    expect(sent.status).toBe(200)
    expect(sent.reply?.error?.code).toBe(-32602)
    const rows = await auditRows()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ request_id: sent.requestId, tool: 'drop_database', outcome: 'invalid_input', http_status: 200, error_code: 'unknown_tool' })
  })

  it('denied: editor calling search is recorded with status 403 and error_code insufficient_scope', async () => {
    const sub = uniqueSub('denied')
    const sent = await call(await mintToken({ role: 'editor', sub }), 'search', { query: 'keyboard' })
    expect(sent.status).toBe(403)
    const rows = await auditRows()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ request_id: sent.requestId, sub, tool: 'search', outcome: 'denied', http_status: 403, error_code: 'insufficient_scope', input_json: '{"query":"keyboard"}' })
  })

  it('error: a tool whose query fails internally is recorded with error_code internal, and the client sees only the request id', async () => {
    const broken = { ...BASE, DB: dbWith(/SELECT id, name, company, email/, { throw: 'D1_ERROR: database disk image is malformed: SQLITE_CORRUPT' }) }
    const logs = captureConsole()
    let sent: Sent
    try {
      sent = await call(await mintToken({ role: 'read-only', sub: uniqueSub('error') }), 'get_customer', { customerId: 'cus_002' }, { env: broken })
    } finally {
      logs.restore()
    }
    const result = toolResult(sent)
    expect(result.isError).toBe(true)
    expect(result.content[0]!.text).toBe(`internal error (request ${sent.requestId})`)
    expect(sent.text).not.toContain('SQLITE_CORRUPT')
    expect(events(logs.lines, 'tool_failed')).toHaveLength(1)
    const rows = await auditRows()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ request_id: sent.requestId, tool: 'get_customer', outcome: 'error', http_status: 200, error_code: 'internal', output_sha256: null })
  })

  // The policy's time limit is 30 s; the test shortens get_customer's limit to
  // 50 ms (the policy table is plain data read per call) and slows the tool's
  // query to 400 ms, so the real AbortSignal.timeout path runs in under a second.
  it('timeout: a tool that runs past its time limit is recorded with outcome timeout', async () => {
    const settings = POLICY.tools.get('get_customer')!
    const original = settings.timeoutMs
    const slow = { ...BASE, DB: dbWith(/SELECT id, name, company, email/, { delayMs: 400 }) }
    const logs = captureConsole()
    let sent: Sent
    settings.timeoutMs = 50
    try {
      sent = await call(await mintToken({ role: 'read-only', sub: uniqueSub('timeout') }), 'get_customer', { customerId: 'cus_003' }, { env: slow })
    } finally {
      settings.timeoutMs = original
      logs.restore()
    }
    const result = toolResult(sent)
    expect(result.isError).toBe(true)
    expect(result.content[0]!.text).toContain('timed out')
    const rows = await auditRows()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ request_id: sent.requestId, tool: 'get_customer', outcome: 'timeout', http_status: 200, error_code: 'timeout' })
  })

  it('a mutation whose time ran out before it committed is never applied afterwards', async () => {
    const settings = POLICY.tools.get('update_order')!
    const original = settings.timeoutMs
    const [order] = await pendingOrders(1)
    // The tool's read of the order takes 300 ms; its limit is 50 ms. Without
    // the guard it would go on to commit after the caller was told it stopped.
    // Latch instead of a fixed sleep: `readDone` fires when the delayed read has
    // returned to the tool; one macrotask turn later every continuation of the
    // tool (including any commit it started) has run, and every commit it sent
    // to the sequencer is awaited before the order is checked.
    let readDone!: () => void
    const latch = new Promise<void>((resolve) => { readDone = resolve })
    const commits: Promise<unknown>[] = []
    const slow = { ...BASE, DB: dbWith(/FROM orders WHERE id = \?1/, { delayMs: 300, onDone: () => readDone() }), AUDIT_SEQUENCER: watchedSequencer(commits) }
    const logs = captureConsole()
    let sent: Sent
    settings.timeoutMs = 50
    try {
      sent = await call(await mintToken({ role: 'editor', sub: uniqueSub('late-commit') }), 'update_order', { orderId: order!.id, status: 'paid' }, { env: slow })
      await latch
      await new Promise((resolve) => setTimeout(resolve, 0))
      await Promise.all(commits)
    } finally {
      settings.timeoutMs = original
      logs.restore()
    }
    expect(toolResult(sent).content[0]!.text).toContain('timed out')
    expect(commits).toEqual([])
    const after = await DB.prepare('SELECT status FROM orders WHERE id = ?1').bind(order!.id).first<string>('status')
    expect(after).toBe('pending')
    expect((await auditRows()).map((r) => r.outcome)).toEqual(['timeout'])
  })

  it('a successful update_order is recorded exactly once, as ok, with the digest of the returned order', async () => {
    const [order] = await pendingOrders(1)
    try {
      const sent = await call(await mintToken({ role: 'editor', sub: uniqueSub('update') }), 'update_order', { orderId: order!.id, status: 'paid', note: 'audit test' })
      const result = toolResult(sent)
      expect(result.isError, sent.text).toBeFalsy()
      expect((await orderRow(order!.id))?.status).toBe('paid')
      const rows = await auditRows()
      expect(rows).toHaveLength(1)
      const text = result.content[0]!.text
      expect(rows[0]).toMatchObject({
        seq: 1, request_id: sent.requestId, tool: 'update_order', outcome: 'ok', http_status: 200, error_code: null,
        output_sha256: await redactedDigest('update_order', text), output_bytes: new TextEncoder().encode(text).byteLength,
      })
      expect(JSON.parse(rows[0]!.input_json!)).toEqual({ orderId: order!.id, status: 'paid', note: 'audit test' })
      expect((await verifyStoredChain(DB)).ok).toBe(true)
    } finally {
      await restoreOrders([order!])
    }
  })

  it('a successful create_ticket is recorded exactly once, as ok', async () => {
    const created: string[] = []
    try {
      const sent = await call(await mintToken({ role: 'editor', sub: uniqueSub('ticket') }), 'create_ticket', { customerId: 'cus_004', subject: 'Audit test ticket', body: 'The printer is on fire.' })
      created.push(ticketIdOf(sent))
      const rows = await auditRows()
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ seq: 1, request_id: sent.requestId, tool: 'create_ticket', outcome: 'ok', http_status: 200, error_code: null })
      expect(JSON.parse(rows[0]!.input_json!)).toEqual({ customerId: 'cus_004', subject: 'Audit test ticket', body: '[redacted]' })
      expect((await verifyStoredChain(DB)).ok).toBe(true)
    } finally {
      await deleteTickets(created)
    }
  })

  it('records nothing for initialize, notifications, tools/list, ping, and a tools/call refused with 401', async () => {
    const token = await mintToken({ role: 'admin', sub: uniqueSub('not-recorded') })
    const init = await post({
      jsonrpc: '2.0', id: nextId++, method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'audit-test', version: '1' } },
    }, { token })
    expect(init.status).toBe(200)
    expect((await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, { token })).status).toBe(202)
    const list = await post({ jsonrpc: '2.0', id: nextId++, method: 'tools/list' }, { token })
    expect(list.status).toBe(200)
    expect((await post({ jsonrpc: '2.0', id: nextId++, method: 'ping' }, { token })).status).toBe(200)
    const expired = await call(await mintToken({ role: 'admin', ttl: -600 }), 'get_customer', { customerId: 'cus_001' })
    expect(expired.status).toBe(401)
    const anonymous = await post({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: 'cus_001' } } })
    expect(anonymous.status).toBe(401)
    expect(await auditRows()).toEqual([])
  })
})

describe('refusals after authentication are recorded too', () => {
  it('records a tools/call refused for a mismatched Mcp-Name header as invalid_input (400)', async () => {
    const token = await mintToken({ role: 'admin', sub: uniqueSub('hdr') })
    const sent = await call(token, 'get_customer', { customerId: 'cus_001' }, { headers: { 'mcp-name': 'execute_query' } })
    expect(sent.status).toBe(400)
    const rows = await auditRows()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ tool: 'get_customer', outcome: 'invalid_input', http_status: 400, error_code: 'bad_header' })
  })

  it('keeps no output excerpt and no output digest for execute_query, whose column aliases would defeat key-based redaction', async () => {
    const token = await mintToken({ role: 'admin', sub: uniqueSub('sql-excerpt') })
    const sent = await call(token, 'execute_query', { query: "SELECT address AS a, body AS b FROM customers, (SELECT 'secret ticket text' AS body) LIMIT 2" })
    expect(toolResult(sent).isError).toBeFalsy()
    const [row] = await auditRows()
    expect(row).toMatchObject({ tool: 'execute_query', outcome: 'ok', output_excerpt: null, output_sha256: null })
    expect(row!.output_bytes).toBeGreaterThan(0)
    expect(JSON.stringify({ ...row, input_json: null })).not.toContain('secret ticket text')
  })
})

describe('concurrency', () => {
  it('50 parallel calls of mixed outcomes give exactly 50 rows, seq 1..50 without a gap, and a chain that verifies', async () => {
    const orders = await pendingOrders(5)
    const ticketsBefore = await ticketCount()
    const created: string[] = []
    type Plan = { kind: 'ok' | 'tool_error' | 'invalid_input' | 'denied' | 'update' | 'ticket'; role: string; tool: string; args: Record<string, unknown> }
    const planFor = (i: number): Plan => {
      const customerId = `cus_0${String(i + 1).padStart(2, '0')}`
      switch (i % 5) {
        case 0: return { kind: 'ok', role: 'read-only', tool: 'get_customer', args: { customerId } }
        case 1: return { kind: 'tool_error', role: 'read-only', tool: 'get_customer', args: { customerId: 'cus_999' } }
        case 2: return i % 2 === 0
          ? { kind: 'invalid_input', role: 'read-only', tool: 'list_orders', args: { limit: 1000 } }
          : { kind: 'invalid_input', role: 'admin', tool: 'no_such_tool', args: {} }
        case 3: return { kind: 'denied', role: 'editor', tool: 'search', args: { query: 'cable' } }
        default: return i % 2 === 0
          ? { kind: 'update', role: 'editor', tool: 'update_order', args: { orderId: orders[(i - 4) / 10]!.id, status: 'paid' } }
          : { kind: 'ticket', role: 'editor', tool: 'create_ticket', args: { customerId, subject: `parallel ${i}`, body: 'b' } }
      }
    }
    const plans = Array.from({ length: 50 }, (_, i) => planFor(i))
    // A distinct sub per call: per-sub concurrency and rate limits are not what this test is about.
    const tokens = await Promise.all(plans.map((p, i) => mintToken({ role: p.role, sub: uniqueSub(`par${i}`) })))
    const logs = captureConsole()
    let sent: Sent[]
    try {
      sent = await Promise.all(plans.map((p, i) => call(tokens[i]!, p.tool, p.args)))
      await settled()
    } finally {
      logs.restore()
    }
    try {
      for (const [i, s] of sent.entries()) if (plans[i]!.kind === 'ticket') created.push(ticketIdOf(s))
      const rows = await auditRows()
      expect(rows).toHaveLength(50)
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
      expect(await verifyStoredChain(DB)).toMatchObject({ ok: true, count: 50, last: { seq: 50 } })
      // Each call is its own row, with the outcome it had on the wire.
      const byRequest = new Map(rows.map((r) => [r.request_id, r]))
      expect(byRequest.size).toBe(50)
      const expected = { ok: 'ok', tool_error: 'tool_error', invalid_input: 'invalid_input', denied: 'denied', update: 'ok', ticket: 'ok' } as const
      for (const [i, s] of sent.entries()) {
        const row = byRequest.get(s.requestId)
        expect(row, `call ${i} (${plans[i]!.kind})`).toBeDefined()
        expect(row, `call ${i}: ${s.text}`).toMatchObject({ tool: plans[i]!.tool, outcome: expected[plans[i]!.kind], http_status: s.status })
      }
      // Every mutation applied exactly once.
      for (const o of orders) expect((await orderRow(o.id))?.status).toBe('paid')
      expect(created).toHaveLength(5)
      expect(await ticketCount()).toBe(ticketsBefore + 5)
      // One writer: nothing failed, nothing was retried, and the heads the
      // sequencer logged (once per flush or mutation) cover every row once.
      expect(events(logs.lines, 'audit_write_failed')).toEqual([])
      expect(events(logs.lines, 'audit_flush_failed')).toEqual([])
      expect(events(logs.lines, 'audit_commit_failed')).toEqual([])
      const heads = events(logs.lines, 'audit_head')
      expect(heads.reduce((n, h) => n + Number(h['rows']), 0)).toBe(50)
      expect(heads.map((h) => h['seq'])).toEqual([...heads.map((h) => h['seq'] as number)].sort((a, b) => a - b))
      expect(heads.at(-1)).toMatchObject({ seq: 50, hash: rows[49]!.hash })
    } finally {
      await restoreOrders(orders)
      await deleteTickets(created)
    }
  })
})

describe('a mutation is applied only together with its audit row', () => {
  it('when the audit INSERT fails, update_order and create_ticket report an internal error and change nothing', async () => {
    const [order] = await pendingOrders(1)
    const subject = `must not exist ${crypto.randomUUID()}`
    const ticketsBefore = await ticketCount()
    const token = await mintToken({ role: 'editor', sub: uniqueSub('atomic') })
    await DB.prepare("CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END").run()
    const logs = captureConsole()
    try {
      const update = await call(token, 'update_order', { orderId: order!.id, status: 'paid', note: 'must not be stored' })
      const updateResult = toolResult(update)
      expect(updateResult.isError).toBe(true)
      expect(updateResult.content[0]!.text).toBe(`internal error (request ${update.requestId})`)
      expect(await orderRow(order!.id)).toEqual(order)

      const ticket = await call(token, 'create_ticket', { customerId: 'cus_005', subject, body: 'must not be stored' })
      const ticketResult = toolResult(ticket)
      expect(ticketResult.isError).toBe(true)
      expect(ticketResult.content[0]!.text).toBe(`internal error (request ${ticket.requestId})`)
      expect(await ticketCount()).toBe(ticketsBefore)
      expect(await DB.prepare('SELECT count(*) AS n FROM tickets WHERE subject = ?1').bind(subject).first<number>('n')).toBe(0)

      // D1 refuses every audit row now, so the failed calls' own rows wait in
      // the sequencer's outbox (accepted = durable there), none is dropped.
      expect(await chain().drain()).toBe(2)
      expect((await DB.prepare('SELECT count(*) AS n FROM audit_log').first<number>('n'))).toBe(0)
      expect(events(logs.lines, 'audit_write_failed')).toEqual([])
      expect(events(logs.lines, 'audit_commit_failed')).toHaveLength(1)
      expect(events(logs.lines, 'audit_flush_failed').length).toBeGreaterThan(0)

      // D1 takes audit rows again: the outbox drains, in order, and the chain verifies.
      await DB.prepare('DROP TRIGGER IF EXISTS fail_audit').run()
      const rows = await auditRows()
      expect(rows.map((r) => [r.seq, r.request_id, r.outcome, r.error_code])).toEqual([
        [1, update.requestId, 'error', 'internal'],
        [2, ticket.requestId, 'error', 'internal'],
      ])
      expect(await verifyStoredChain(DB)).toMatchObject({ ok: true, count: 2 })
      expect(await orderRow(order!.id)).toEqual(order)
      expect(await ticketCount()).toBe(ticketsBefore)
    } finally {
      logs.restore()
      await DB.prepare('DROP TRIGGER IF EXISTS fail_audit').run()
      await restoreOrders([order!])
      await DB.prepare('DELETE FROM tickets WHERE subject = ?1').bind(subject).run()
    }
  })
})

describe('redaction', () => {
  it('no row carries the bearer token, the Authorization value, or any customer email or phone; personal data shows as redacted', async () => {
    const customers = (await DB.prepare('SELECT id, email, phone FROM customers').all<{ id: string; email: string; phone: string }>()).results
    const victim = customers.find((c) => c.id === 'cus_007')!
    const readerToken = await mintToken({ role: 'read-only', sub: uniqueSub('redact-r') })
    const editorToken = await mintToken({ role: 'editor', sub: uniqueSub('redact-e') })
    const created: string[] = []
    try {
      const got = await call(readerToken, 'get_customer', { customerId: victim.id })
      expect(toolResult(got).structuredContent?.['customer']).toMatchObject({ email: victim.email, phone: victim.phone })
      const searched = await call(readerToken, 'search_products', { query: victim.email })
      toolResult(searched)
      const ticket = await call(editorToken, 'create_ticket', {
        customerId: victim.id,
        subject: `Call back ${victim.phone} or write to ${victim.email}`,
        body: `Customer ${victim.email} (phone ${victim.phone}) says: my token is Bearer ${readerToken}`,
      })
      created.push(ticketIdOf(ticket))
      const denied = await call(editorToken, 'search', { query: `${victim.email} ${victim.phone}` })
      expect(denied.status).toBe(403)
      const refused = await call(readerToken, 'get_customer', { customerId: victim.id, email: victim.email })
      expect(toolResult(refused).isError).toBe(true)

      const rows = await auditRows()
      expect(rows).toHaveLength(5)
      const forbidden = [readerToken, editorToken, `Bearer ${readerToken}`, `Bearer ${editorToken}`, ...[readerToken, editorToken].flatMap((t) => t.split('.').slice(1))]
      for (const row of rows) {
        for (const [column, value] of Object.entries(row)) {
          if (typeof value !== 'string') continue
          for (const secret of forbidden) expect(value, `${column} of seq ${row.seq}`).not.toContain(secret)
          for (const c of customers) {
            expect(value, `${column} of seq ${row.seq}`).not.toContain(c.email)
            expect(value, `${column} of seq ${row.seq}`).not.toContain(c.phone)
            expect(value, `${column} of seq ${row.seq}`).not.toContain(c.phone.slice(1))
          }
        }
      }
      const bySeq = (request: Sent) => rows.find((r) => r.request_id === request.requestId)!
      expect(JSON.parse(bySeq(searched).input_json!)).toEqual({ query: '[redacted-email]' })
      expect(JSON.parse(bySeq(ticket).input_json!)).toEqual({ customerId: victim.id, subject: 'Call back [redacted-phone] or write to [redacted-email]', body: '[redacted]' })
      expect(JSON.parse(bySeq(refused).input_json!)).toEqual({ customerId: victim.id, email: '[redacted]' })
      const excerpt = JSON.parse(bySeq(got).output_excerpt!) as { customer: Record<string, unknown> }
      expect(excerpt.customer).toMatchObject({ id: victim.id, email: '[redacted]', phone: '[redacted]', address: '[redacted]' })
    } finally {
      await deleteTickets(created)
    }
  })

  it.each([
    ['get_customer', 'read-only', () => ({ customerId: 'cus_008' })],
    ['search_products', 'read-only', () => ({ query: 'cable', limit: 3 })],
    ['update_order', 'editor', () => ({ status: 'paid' })],
    ['create_ticket', 'editor', () => ({ customerId: 'cus_008', subject: 'digest check', body: 'b' })],
  ] as const)('output_sha256 and output_bytes of %s are those of the structuredContent the client received (digest of it redacted)', async (tool, role, args) => {
    const [order] = await pendingOrders(1)
    const created: string[] = []
    try {
      const callArgs: Record<string, unknown> = tool === 'update_order' ? { orderId: order!.id, ...args() } : args()
      const sent = await call(await mintToken({ role, sub: uniqueSub('digest') }), tool, callArgs)
      const result = toolResult(sent)
      expect(result.isError, sent.text).toBeFalsy()
      if (tool === 'create_ticket') created.push(ticketIdOf(sent))
      const received = JSON.stringify(result.structuredContent)
      expect(result.content[0]!.text).toBe(received)
      const rows = await auditRows()
      expect(rows).toHaveLength(1)
      expect({ output_sha256: rows[0]!.output_sha256, output_bytes: rows[0]!.output_bytes })
        .toEqual({ output_sha256: await redactedDigest(tool, received), output_bytes: new TextEncoder().encode(received).byteLength })
    } finally {
      await restoreOrders([order!])
      await deleteTickets(created)
    }
  })
})

describe('log lines', () => {
  it('no log line carries a token or an email, through a 401, a denial and an internal error', async () => {
    const customers = (await DB.prepare('SELECT email FROM customers').all<{ email: string }>()).results
    const email = customers[10]!.email
    // A real, correctly signed token, refused only for its audience.
    const wrongAudience = await mintToken({ role: 'admin', sub: uniqueSub('log-401'), claims: { aud: 'https://other.test/mcp' }, omit: ['aud'] })
    const editor = await mintToken({ role: 'editor', sub: uniqueSub('log-denied') })
    const reader = await mintToken({ role: 'read-only', sub: uniqueSub('log-error') })
    const broken = { ...BASE, DB: dbWith(/FROM orders\s+WHERE \(\?1 IS NULL/, { throw: 'D1_ERROR: no such table: orders: SQLITE_ERROR' }) }
    const logs = captureConsole()
    try {
      expect((await call(wrongAudience, 'get_customer', { customerId: 'cus_011' })).status).toBe(401)
      expect((await post({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { headers: { authorization: `Basic ${btoa(`${email}:hunter2`)}` } })).status).toBe(401)
      expect((await call(editor, 'search', { query: email })).status).toBe(403)
      const failed = await call(reader, 'list_orders', { customerId: 'cus_011', status: 'pending' }, { env: broken })
      expect(toolResult(failed).content[0]!.text).toBe(`internal error (request ${failed.requestId})`)
      expect(toolResult(await call(reader, 'search_products', { query: email })).isError).toBeFalsy()
    } finally {
      logs.restore()
    }
    expect(logs.lines.length).toBeGreaterThan(0)
    expect(events(logs.lines, 'auth_refused')).toHaveLength(1)
    expect(events(logs.lines, 'tool_failed')).toHaveLength(1)
    const secrets = [wrongAudience, editor, reader, ...[wrongAudience, editor, reader].map((t) => t.split('.')[2]!), btoa(`${email}:hunter2`)]
    for (const { text } of logs.lines) {
      for (const secret of secrets) expect(text).not.toContain(secret)
      for (const c of customers) expect(text).not.toContain(c.email)
    }
  })

  // Drivers and libraries quote offending values in their messages; the
  // tool_failed line logs the message (and stack) as is.
  it('an internal error whose message quotes a customer email is logged without the email', async () => {
    const email = (await DB.prepare("SELECT email FROM customers WHERE id = 'cus_015'").first<string>('email'))!
    const broken = { ...BASE, DB: dbWith(/FROM orders WHERE id = \?1/, { throw: `D1_ERROR: constraint failed for value '${email}'` }) }
    const logs = captureConsole()
    let sent: Sent
    try {
      sent = await call(await mintToken({ role: 'editor', sub: uniqueSub('log-email') }), 'update_order', { orderId: 'ord_0015', status: 'paid' }, { env: broken })
    } finally {
      logs.restore()
    }
    expect(toolResult(sent).content[0]!.text).toBe(`internal error (request ${sent.requestId})`)
    expect(events(logs.lines, 'tool_failed')).toHaveLength(1)
    for (const { text } of logs.lines) expect(text).not.toContain(email)
    expect((await auditRows()).map((r) => r.outcome)).toEqual(['error'])
  })
})

describe('alerts', () => {
  // A stub of globalThis.fetch stands in for the webhook receiver: the workers
  // pool cannot open a listening socket, and the Worker's code runs in this
  // test's isolate, so its outbound fetch is the stubbed one.
  it('a burst of 10 internal errors of one tool sends exactly one signed alert, with count 1, and audits all 10', async () => {
    const hook = {
      ...BASE,
      ALERT_WEBHOOK_URL: 'https://alerts.example/hook',
      ALERT_WEBHOOK_SECRET: 's3cret',
      DB: dbWith(/FROM products/, { throw: 'D1_ERROR: D1 is overloaded' }),
    }
    const posts: { url: string; method: string; headers: Headers; body: string }[] = []
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init)
      posts.push({ url: request.url, method: request.method, headers: request.headers, body: await request.text() })
      return new Response(null, { status: 204 })
    })
    const tokens = await Promise.all(Array.from({ length: 10 }, (_, i) => mintToken({ role: 'read-only', sub: uniqueSub(`burst${i}`) })))
    const logs = captureConsole()
    let sent: Sent[]
    try {
      sent = await Promise.all(tokens.map((t) => call(t, 'search_products', { query: 'keyboard' }, { env: hook })))
    } finally {
      logs.restore()
      fetchSpy.mockRestore()
    }
    for (const s of sent) expect(toolResult(s).content[0]!.text).toBe(`internal error (request ${s.requestId})`)
    const rows = await auditRows()
    expect(rows).toHaveLength(10)
    expect(rows.every((r) => r.outcome === 'error' && r.tool === 'search_products')).toBe(true)

    expect(posts).toHaveLength(1)
    const [alertPost] = posts
    expect(alertPost).toMatchObject({ url: 'https://alerts.example/hook', method: 'POST' })
    expect(alertPost!.headers.get('content-type')).toBe('application/json')
    const signature = alertPost!.headers.get(ALERT_SIGNATURE_HEADER)
    expect(signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/)
    const nowSeconds = Math.floor(Date.now() / 1000)
    expect(await verifyAlertSignature(alertPost!.body, signature, 's3cret', nowSeconds)).toBe(true)
    expect(await verifyAlertSignature(alertPost!.body, signature, 'wrong-secret', nowSeconds)).toBe(false)
    expect(await verifyAlertSignature(alertPost!.body.replace('"count":1', '"count":2'), signature, 's3cret', nowSeconds)).toBe(false)
    const alert = JSON.parse(alertPost!.body) as Record<string, unknown>
    expect(alert).toMatchObject({ kind: 'error', tool: 'search_products', count: 1, detail: 'internal' })
    expect(sent.map((s) => s.requestId)).toContain(alert['requestId'])
    expect(events(logs.lines, 'alert').filter((l) => l['msg'] === 'alert delivered')).toHaveLength(1)

    // The other 9 were counted, not sent: once the minute has passed, the
    // next alert for this tool and kind carries them.
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      vi.setSystemTime(Date.now() + 61_000)
      const due = alertThrottle.flush().filter((a) => a.tool === 'search_products' && a.kind === 'error')
      expect(due).toHaveLength(1)
      expect(due[0]!.count).toBe(9)
    } finally {
      vi.useRealTimers()
    }
  })

  it('without ALERT_WEBHOOK_URL the alert is logged, not sent', async () => {
    const quiet = { ...BASE, ALERT_WEBHOOK_URL: '', ALERT_WEBHOOK_SECRET: '', DB: dbWith(/search_index MATCH/, { throw: 'D1_ERROR: fts5: corrupt' }) }
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockImplementation(async () => new Response(null, { status: 204 }))
    const logs = captureConsole()
    try {
      const sent = await call(await mintToken({ role: 'admin', sub: uniqueSub('alert-log') }), 'search', { query: 'keyboard' }, { env: quiet })
      expect(toolResult(sent).isError).toBe(true)
      expect(fetchSpy).not.toHaveBeenCalled()
      const alerts = events(logs.lines, 'alert')
      expect(alerts).toHaveLength(1)
      expect(alerts[0]).toMatchObject({ level: 'warn', msg: 'alert', alert: { kind: 'error', tool: 'search', count: 1, requestId: sent.requestId } })
    } finally {
      logs.restore()
      fetchSpy.mockRestore()
    }
  })
})

describe('retention', () => {
  it('the cron deletes rows older than AUDIT_RETENTION_DAYS, writes the checkpoint, and the chain still verifies and continues', async () => {
    const old = new Date(Date.now() - 40 * 86_400_000).toISOString()
    const stored = []
    for (let i = 0; i < 5; i += 1) {
      stored.push(await appendAudit(DB, {
        ts: old, request_id: crypto.randomUUID(), sub: 'old-caller', token_id: 'jti-old', method: 'tools/call', tool: 'get_customer',
        outcome: 'ok', http_status: 200, duration_ms: 3,
      }))
    }
    // Written behind the sequencer's back (as an offline import would be): it reloads its head.
    expect(await chain().resync()).toEqual({ ok: true, head: { seq: 5, hash: stored[4]!.hash } })
    const token = await mintToken({ role: 'read-only', sub: uniqueSub('retention') })
    for (const id of ['cus_012', 'cus_013']) toolResult(await call(token, 'get_customer', { customerId: id }))
    expect((await auditRows()).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7])

    const retained = { ...BASE, AUDIT_RETENTION_DAYS: '30' }
    const logs = captureConsole()
    try {
      const ctx = createExecutionContext()
      await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: '17 3 * * *' }), retained, ctx)
      await waitOnExecutionContext(ctx)
    } finally {
      logs.restore()
    }
    expect(events(logs.lines, 'audit_pruned')).toMatchObject([{ deleted: 5, checkpoint: { seq: 5, hash: stored[4]!.hash } }])
    expect((await auditRows()).map((r) => r.seq)).toEqual([6, 7])
    expect(await readCheckpoint(DB)).toEqual({ seq: 5, hash: stored[4]!.hash })
    expect(await verifyStoredChain(DB)).toMatchObject({ ok: true, count: 2, last: { seq: 7 } })

    // New calls continue the chain from the kept rows.
    const next = await call(token, 'get_customer', { customerId: 'cus_014' })
    const rows = await auditRows()
    expect(rows.map((r) => r.seq)).toEqual([6, 7, 8])
    expect(rows[2]).toMatchObject({ request_id: next.requestId, prev_hash: rows[1]!.hash })
    expect(await verifyStoredChain(DB)).toMatchObject({ ok: true, count: 3, last: { seq: 8 } })

    // A run with nothing old enough deletes nothing and keeps the checkpoint.
    const again = createExecutionContext()
    const logs2 = captureConsole()
    try {
      await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: '17 3 * * *' }), retained, again)
      await waitOnExecutionContext(again)
    } finally {
      logs2.restore()
    }
    expect(events(logs2.lines, 'audit_pruned')).toMatchObject([{ deleted: 0 }])
    expect(await readCheckpoint(DB)).toEqual({ seq: 5, hash: stored[4]!.hash })
    expect((await auditRows()).map((r) => r.seq)).toEqual([6, 7, 8])
  })
})
