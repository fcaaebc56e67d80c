// AuditedCall against the real AuditSequencer and D1: whichever of commit,
// finish and finishFromHttp comes first writes the call's one audit row, the
// later ones write nothing, and a call the tool boundary never reported on is
// recorded from its HTTP result. The 50-concurrent-calls property through the
// whole Worker is in audit.test.ts.
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { AuditedCall, type ToolReport } from '../../src/audit/audited-call.ts'
import { sequencer } from '../../src/audit/writer.ts'
import type { Principal } from '../../src/auth/principal.ts'
import { parseConfig } from '../../src/config.ts'
import { AppError } from '../../src/errors.ts'
import type { LogFields, LogLevel } from '../../src/log.ts'
import { testEnv } from '../support/test-env.ts'

const BASE = testEnv(env)
const DB = BASE.DB
const CHAIN = 0
const parsed = parseConfig(BASE as unknown as Record<string, unknown>)
if (!parsed.ok) throw new Error(`test config: ${parsed.setting}: ${parsed.problem}`)
const config = parsed.config

const principal: Principal = { sub: 'audited-call', scopes: new Set(['tickets:write']), roles: ['editor'], tokenId: 'jti-ac', clientId: undefined, claims: new Map() }
const ticketSql = `INSERT INTO tickets (id, customer_id, subject, body, created_by, created_at) VALUES (?1, 'cus_001', 'subject', 'body', 'audited-call', ?2)`

interface Harness {
  call: AuditedCall
  requestId: string
  /** Waits for the waitUntil work and the sequencer's flush, then reads this call's rows. */
  rows(): Promise<{ outcome: string; http_status: number; error_code: string | null; tool: string | null }[]>
}

function harness(tool = 'create_ticket'): Harness {
  const requestId = `ac-${crypto.randomUUID()}`
  const background: Promise<unknown>[] = []
  const call = new AuditedCall({
    facts: { requestId, startedAt: Date.now(), principal, method: 'tools/call', toolName: tool, toolArguments: { customerId: 'cus_001' }, client: undefined },
    chain: CHAIN,
    env: BASE,
    log: (_level: LogLevel, _event: string, _fields?: LogFields) => {},
    config,
    waitUntil: (p) => void background.push(p),
  })
  return {
    call,
    requestId,
    async rows() {
      await Promise.all(background)
      expect(await sequencer(BASE, CHAIN).drain()).toBe(0)
      const { results } = await DB.prepare('SELECT outcome, http_status, error_code, tool FROM audit_log WHERE request_id = ?1 ORDER BY seq')
        .bind(requestId)
        .all<{ outcome: string; http_status: number; error_code: string | null; tool: string | null }>()
      return results
    },
  }
}

const toolError: ToolReport = { outcome: 'tool_error', errorCode: 'not_found', outputJson: undefined }
const ticket = () => `tkt_ac_${crypto.randomUUID().slice(0, 8)}`
const ticketExists = async (id: string) => (await DB.prepare('SELECT COUNT(*) AS n FROM tickets WHERE id = ?1').bind(id).first<number>('n')) === 1

describe('AuditedCall writes exactly one row per call: the first ending wins', () => {
  it('finish then finishFromHttp leaves one row, the tool boundary’s', async () => {
    const h = harness()
    h.call.finish(toolError)
    h.call.finishFromHttp(500, undefined)
    expect(await h.rows()).toEqual([{ outcome: 'tool_error', http_status: 200, error_code: 'not_found', tool: 'create_ticket' }])
  })

  it('commit then finish then finishFromHttp leaves one row, the commit’s ok row, and the change is applied', async () => {
    const h = harness()
    const id = ticket()
    expect(await h.call.commit([{ sql: ticketSql, params: [id, new Date().toISOString()] }], { id })).toBe(true)
    h.call.finish({ outcome: 'ok', errorCode: undefined, outputJson: JSON.stringify({ id }) })
    h.call.finishFromHttp(200, undefined)
    expect(await h.rows()).toEqual([{ outcome: 'ok', http_status: 200, error_code: null, tool: 'create_ticket' }])
    expect(await ticketExists(id)).toBe(true)
  })

  it('a finish that arrives while the commit is in flight writes nothing once the commit applied', async () => {
    const h = harness()
    const id = ticket()
    const committing = h.call.commit([{ sql: ticketSql, params: [id, new Date().toISOString()] }], { id })
    h.call.finish({ outcome: 'timeout', errorCode: 'timeout', outputJson: undefined })
    expect(await committing).toBe(true)
    expect(await h.rows()).toEqual([{ outcome: 'ok', http_status: 200, error_code: null, tool: 'create_ticket' }])
  })

  it('a commit that changed nothing writes no row, and the finish that follows is the row', async () => {
    const h = harness('update_order')
    expect(await h.call.commit([{ sql: "UPDATE orders SET note = 'x' WHERE id = ?1", params: ['ord_does_not_exist'] }], {})).toBe(false)
    h.call.finish(toolError)
    expect(await h.rows()).toEqual([{ outcome: 'tool_error', http_status: 200, error_code: 'not_found', tool: 'update_order' }])
  })

  it('refuses a commit after the call has its row, and applies nothing', async () => {
    const h = harness()
    const id = ticket()
    h.call.finish(toolError)
    await expect(h.call.commit([{ sql: ticketSql, params: [id, new Date().toISOString()] }], { id })).rejects.toThrow(/already has its audit row/)
    expect(await h.rows()).toHaveLength(1)
    expect(await ticketExists(id)).toBe(false)
  })
})

describe('finishFromHttp records a call the tool boundary never reported on', () => {
  const cases: { name: string; status: number; error?: Error; tool?: string; outcome: string; errorCode: string }[] = [
    { name: '403 as denied', status: 403, outcome: 'denied', errorCode: 'forbidden' },
    { name: 'a missing scope as denied, insufficient_scope', status: 403, error: new AppError('insufficient_scope'), outcome: 'denied', errorCode: 'insufficient_scope' },
    { name: '429 as rate_limited', status: 429, outcome: 'rate_limited', errorCode: 'rate_limited' },
    { name: '503 as error', status: 503, outcome: 'error', errorCode: 'internal' },
    { name: '200 without a report as invalid_input, invalid_arguments', status: 200, tool: 'get_customer', outcome: 'invalid_input', errorCode: 'invalid_arguments' },
    { name: '200 for an unknown tool as invalid_input, unknown_tool', status: 200, tool: 'no_such_tool', outcome: 'invalid_input', errorCode: 'unknown_tool' },
  ]
  for (const c of cases) {
    it(`records ${c.name}`, async () => {
      const h = harness(c.tool ?? 'get_customer')
      h.call.finishFromHttp(c.status, c.error)
      expect(await h.rows()).toEqual([{ outcome: c.outcome, http_status: c.status, error_code: c.errorCode, tool: c.tool ?? 'get_customer' }])
    })
  }
})
