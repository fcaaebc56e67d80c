// The SQL write-incident path through the tool (issue #13, item 7): if D1 ever
// reports that an execute_query statement wrote, the rows are withheld, the
// call is audited as `error` / `sql_write_incident`, and an alert goes out.
//
// It cannot be triggered for real: every statement the guard admits is a
// SELECT, and workerd's D1 reports `changed_db: false, rows_written: 0,
// changes: 0` for every SELECT (checked: also right after an UPDATE on the
// same database, so there is no stale counter to trip on; first test below).
// The closest real path is driven instead: a real MCP request through the
// whole Worker (auth, policy, audit, the tool, the guard, the EXPLAIN gate,
// the LIMIT 0 probe and the capped statement on the real D1), where only the
// META of the capped statement's result is changed to report a write. The
// webhook receiver is a stub of globalThis.fetch (the workers pool cannot
// listen on a socket; the Worker runs in this isolate).
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it, vi } from 'vitest'
import worker from '../../src/index.ts'
import { verifyAlertSignature, ALERT_SIGNATURE_HEADER } from '../../src/audit/alert.ts'
import { testEnv } from '../support/test-env.ts'
import { mintToken } from '../support/tokens.ts'

const BASE = testEnv(env)
const DB = BASE.DB

/** The real D1 (and its sessions), except that the capped statement's result says it wrote. */
function d1ReportingAWrite(): { db: D1Database; tripped: () => number } {
  let tripped = 0
  const reportWrite = (statement: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(statement, {
      get(s, p) {
        const value = Reflect.get(s, p, s) as unknown
        if (p !== 'all') return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(s) : value
        return async () => {
          const result = await s.all()
          tripped++
          return { ...result, meta: { ...result.meta, changed_db: true, rows_written: 1, changes: 1 } }
        }
      },
    })
  const wrap = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(t, property) {
        const value = Reflect.get(t, property, t) as unknown
        if (property === 'prepare') {
          return (sql: string) => {
            const statement = (value as (q: string) => D1PreparedStatement).call(t, sql)
            // execute.ts's capped statement: `WITH q(c0, ...) AS (<guarded query>) SELECT ...`
            return sql.startsWith('WITH q(c0') ? reportWrite(statement) : statement
          }
        }
        // execute_query runs in a D1 session: wrap the session the same way
        if (property === 'withSession') return (...args: unknown[]) => wrap((value as (...a: unknown[]) => object).apply(t, args))
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(t) : value
      },
    })
  return { db: wrap(DB), tripped: () => tripped }
}

afterEach(() => vi.restoreAllMocks())

describe('a write reported by D1 during execute_query, through the whole Worker', () => {
  it('D1 really reports no write for a SELECT, even right after an UPDATE (so the tripwire has no false alarm)', async () => {
    await DB.prepare("UPDATE customers SET tier = tier WHERE id = 'cus_001'").run()
    const { meta } = await DB.prepare('SELECT * FROM (\nSELECT id, email FROM customers\n) LIMIT 3').all()
    expect({ changed_db: meta.changed_db, rows_written: meta.rows_written, changes: meta.changes }).toEqual({ changed_db: false, rows_written: 0, changes: 0 })
  })

  it('withholds the rows, audits sql_write_incident as an error, and sends one signed alert', async () => {
    const { db, tripped } = d1ReportingAWrite()
    const hook = { ...BASE, DB: db, ALERT_WEBHOOK_URL: 'https://alerts.example/incident', ALERT_WEBHOOK_SECRET: 'incident-secret' }
    const posts: { url: string; headers: Headers; body: string }[] = []
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init)
      posts.push({ url: request.url, headers: request.headers, body: await request.text() })
      return new Response(null, { status: 204 })
    })
    vi.spyOn(console, 'log').mockImplementation(() => undefined)
    vi.spyOn(console, 'error').mockImplementation(() => undefined)
    vi.spyOn(console, 'warn').mockImplementation(() => undefined)

    const sub = `incident-${crypto.randomUUID().slice(0, 8)}`
    const token = await mintToken({ role: 'admin', sub })
    const ctx = createExecutionContext()
    const response = await worker.fetch(
      new Request(BASE.AUTH_AUDIENCE, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}` },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_query', arguments: { query: "SELECT id, email FROM customers WHERE id = 'cus_001'" } } }),
      }),
      hook,
      ctx,
    )
    const text = await response.text()
    await waitOnExecutionContext(ctx)
    const requestId = response.headers.get('x-request-id')

    expect(tripped()).toBe(1) // the real statement ran on the real D1
    expect(response.status).toBe(200)
    const json = text.startsWith('{') ? text : text.split('\n').find((l) => l.startsWith('data: '))!.slice(6)
    const result = (JSON.parse(json) as { result: { isError?: boolean; content: { text: string }[]; structuredContent?: unknown } }).result
    expect(result.isError).toBe(true)
    expect(result.content[0]!.text).toBe('query refused: it attempted to modify the database; this incident has been recorded')
    expect(result.structuredContent).toBeUndefined()
    // no row data leaves: not the id, not the e-mail the statement read
    const real = await DB.prepare("SELECT email FROM customers WHERE id = 'cus_001'").first<{ email: string }>()
    expect(real!.email).toContain('@')
    expect(text).not.toContain(real!.email)
    expect(text).not.toContain('cus_001')
    expect(text).not.toMatch(/"rows"/)

    // audited (the row may be written after the response: poll until it is there)
    let row: Record<string, unknown> | null = null
    for (let i = 0; i < 100 && row === null; i++) {
      row = await DB.prepare('SELECT outcome, error_code, tool, sub, output_sha256 FROM audit_log WHERE request_id = ?1').bind(requestId).first()
      if (row === null) await new Promise((r) => setTimeout(r, 50))
    }
    expect(row).toEqual({ outcome: 'error', error_code: 'sql_write_incident', tool: 'execute_query', sub, output_sha256: null })

    // alerted, signed, with its own kind
    const incidents = posts.filter((p) => JSON.parse(p.body).kind === 'sql_write_incident')
    expect(incidents).toHaveLength(1)
    expect(incidents[0]!.url).toBe('https://alerts.example/incident')
    expect(JSON.parse(incidents[0]!.body)).toMatchObject({ kind: 'sql_write_incident', tool: 'execute_query', requestId, sub, count: 1 })
    expect(await verifyAlertSignature(incidents[0]!.body, incidents[0]!.headers.get(ALERT_SIGNATURE_HEADER), 'incident-secret', Math.floor(Date.now() / 1000))).toBe(true)
  })
})
