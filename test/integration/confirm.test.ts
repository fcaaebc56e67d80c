// Confirmation of destructive calls (src/mcp/confirm.ts; README
// "Confirmation"): cancelling an order through the whole Worker, with the real
// SDK v2 client answering the elicitation on both protocol eras, and with raw
// 2026-07-28 requests replaying, tampering with and reusing request states.
// The truth is D1: the order row and the caller's audit rows.
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it } from 'vitest'
import type { Client } from '@modelcontextprotocol/client'
import { sequencer } from '../../src/audit/writer.ts'
import worker from '../../src/index.ts'
import { describeChange, invokeTool } from '../../src/mcp/invoke.ts'
import type { RequestScope } from '../../src/mcp/scope.ts'
import { MAX_CONFIRM_TTL_SECONDS } from '../../src/config.ts'
import { rulesFor } from '../../src/middleware/limits.ts'
import { POLICY } from '../../src/policy/policy.ts'
import { updateOrder } from '../../src/tools/update-order.ts'
import { testEnv } from '../support/test-env.ts'
import { mintToken } from '../support/tokens.ts'
import { callWorker, connectClient, MCP_URL, modernRpc, rpcBody, type Elicit } from '../support/worker.ts'

const E = testEnv(env)
const ELICIT = { capabilities: { elicitation: { form: {} } } }

interface ToolResult {
  isError?: boolean
  content: { type: string; text?: string }[]
  structuredContent?: Record<string, unknown>
}
interface InputRequired {
  resultType: 'input_required'
  inputRequests: Record<string, { method: string; params: { message: string; requestedSchema: unknown } }>
  requestState: string
}

const open: Client[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close().catch(() => {})))
})

async function orderIn(status: string): Promise<{ id: string; status: string; customer_id: string }> {
  const row = await E.DB.prepare('SELECT id, status, customer_id FROM orders WHERE status = ?1 ORDER BY random() LIMIT 1').bind(status).first<{ id: string; status: string; customer_id: string }>()
  expect(row, `a ${status} order`).not.toBeNull()
  return row!
}
const statusOf = async (id: string) => (await E.DB.prepare('SELECT status FROM orders WHERE id = ?1').bind(id).first<{ status: string }>())!.status
const setStatus = (id: string, status: string) => E.DB.prepare('UPDATE orders SET status = ?2 WHERE id = ?1').bind(id, status).run()

/** The caller's audit rows, oldest first, once the sequencer has written them. */
async function rowsOf(sub: string): Promise<{ outcome: string; error_code: string | null; output_excerpt: string | null }[]> {
  expect(await sequencer(E, 0).drain()).toBe(0)
  return (await E.DB.prepare('SELECT outcome, error_code, output_excerpt FROM audit_log WHERE sub = ?1 ORDER BY seq').bind(sub).all<{ outcome: string; error_code: string | null; output_excerpt: string | null }>()).results
}

async function editor(label: string) {
  const sub = `confirm-${label}-${crypto.randomUUID().slice(0, 8)}`
  return { sub, token: await mintToken({ role: 'editor', sub }) }
}

async function client(token: string, era: 'modern' | 'legacy', elicit?: Elicit): Promise<Client> {
  const c = await connectClient(token, era, elicit)
  open.push(c)
  return c
}

const cancel = (orderId: string) => ({ name: 'update_order', arguments: { orderId, status: 'cancelled' } })

/** Round 1 over raw 2026-07-28: the input_required result. */
async function ask(token: string, orderId: string, settings: Record<string, string> = {}): Promise<InputRequired> {
  const res = await modernRpc(settings, token, 'tools/call', cancel(orderId), ELICIT)
  expect(res.status).toBe(200)
  const body = await rpcBody(res)
  const result = body['result'] as InputRequired
  expect(result.resultType, JSON.stringify(body)).toBe('input_required')
  return result
}

/** Round 2 over raw 2026-07-28: the same call with the state and an answer. */
async function answer(token: string, orderId: string, requestState: string, response: Record<string, unknown>, settings: Record<string, string> = {}): Promise<ToolResult> {
  const res = await modernRpc(settings, token, 'tools/call', { ...cancel(orderId), requestState, inputResponses: { confirm: response } }, ELICIT)
  expect(res.status).toBe(200)
  const body = await rpcBody(res)
  expect(body['error'], JSON.stringify(body)).toBeUndefined()
  return body['result'] as ToolResult
}
const YES = { action: 'accept', content: { confirm: true } }

describe.each(['modern', 'legacy'] as const)('cancelling an order with the SDK v2 client (%s)', (era) => {
  it('the user confirms: the question states the order and its move, the order is cancelled, the rounds are audited', async () => {
    const { sub, token } = await editor(`yes-${era}`)
    const order = await orderIn('pending')
    const asked: string[] = []
    const c = await client(token, era, (params) => {
      asked.push(params.message)
      return { action: 'accept', content: { confirm: true } }
    })
    const result = (await c.callTool({ name: 'update_order', arguments: { orderId: order.id, status: 'cancelled' } })) as ToolResult
    expect(result.isError, result.content[0]?.text).toBeFalsy()
    expect(asked).toHaveLength(1)
    expect(asked[0]).toContain(`Change order ${order.id} (customer ${order.customer_id}`)
    expect(asked[0]).toContain('from pending to cancelled?')
    expect(asked[0]).toContain('cancelled is final')
    expect(await statusOf(order.id)).toBe('cancelled')
    expect((await rowsOf(sub)).map((r) => r.outcome)).toEqual(['confirmation_requested', 'confirmed'])
  })

  it('the user declines: nothing changes, the refusal says so, the rounds are audited', async () => {
    const { sub, token } = await editor(`no-${era}`)
    const order = await orderIn('paid')
    const c = await client(token, era, () => ({ action: 'decline' }))
    const result = (await c.callTool({ name: 'update_order', arguments: { orderId: order.id, status: 'cancelled' } })) as ToolResult
    expect(result.isError).toBe(true)
    expect(result.content[0]?.text).toBe('The user declined: update_order did not run and nothing was changed.')
    expect(await statusOf(order.id)).toBe('paid')
    expect((await rowsOf(sub)).map((r) => [r.outcome, r.error_code])).toEqual([['confirmation_requested', null], ['declined', 'confirmation_decline']])
  })

  it('an accepted form with confirm = false is a no', async () => {
    const { token } = await editor(`false-${era}`)
    const order = await orderIn('pending')
    const c = await client(token, era, () => ({ action: 'accept', content: { confirm: false } }))
    const result = (await c.callTool({ name: 'update_order', arguments: { orderId: order.id, status: 'cancelled' } })) as ToolResult
    expect(result.content[0]?.text).toBe('The user answered no: update_order did not run and nothing was changed.')
    expect(await statusOf(order.id)).toBe('pending')
  })

  it('a client that cannot elicit is refused, naming the need, and nothing is written', async () => {
    const { sub, token } = await editor(`unable-${era}`)
    const order = await orderIn('pending')
    const c = await client(token, era)
    const result = (await c.callTool({ name: 'update_order', arguments: { orderId: order.id, status: 'cancelled' } })) as ToolResult
    expect(result.isError).toBe(true)
    expect(result.content[0]?.text).toMatch(/^update_order needs the user's confirmation for this call \("Change order .+\), and this client cannot ask its user: it did not declare the elicitation capability \(form mode\)\. Nothing was changed\./)
    expect(await statusOf(order.id)).toBe('pending')
    expect((await rowsOf(sub)).map((r) => [r.outcome, r.error_code])).toEqual([['denied', 'confirmation_unsupported']])
  })

  it('a move the policy does not confirm runs at once (pending → paid)', async () => {
    const { sub, token } = await editor(`plain-${era}`)
    const order = await orderIn('pending')
    const c = await client(token, era, () => {
      throw new Error('nobody should be asked')
    })
    const result = (await c.callTool({ name: 'update_order', arguments: { orderId: order.id, status: 'paid' } })) as ToolResult
    expect(result.isError, result.content[0]?.text).toBeFalsy()
    expect(await statusOf(order.id)).toBe('paid')
    expect((await rowsOf(sub)).map((r) => r.outcome)).toEqual(['ok'])
  })

  it('a cancellation that would fail anyway fails without asking (already cancelled)', async () => {
    const { token } = await editor(`final-${era}`)
    const order = await orderIn('cancelled')
    let asked = 0
    const c = await client(token, era, () => {
      asked++
      return { action: 'accept', content: { confirm: true } }
    })
    const result = (await c.callTool({ name: 'update_order', arguments: { orderId: order.id, status: 'cancelled' } })) as ToolResult
    expect(result.content[0]?.text).toBe(`order ${order.id} is already cancelled`)
    expect(asked).toBe(0)
  })
})

describe('concurrency leases of a tool that may ask its user', () => {
  it('last as long as the longest question can wait, so a waiting 2025-era call keeps its slot', () => {
    const asking = rulesFor('tools/call', 'update_order').concurrency
    const plain = rulesFor('tools/call', 'create_ticket').concurrency
    expect(asking.every((r) => r.ttlMs > MAX_CONFIRM_TTL_SECONDS * 1000 + POLICY.tools.get('update_order')!.timeoutMs)).toBe(true)
    expect(plain.every((r) => r.ttlMs < MAX_CONFIRM_TTL_SECONDS * 1000)).toBe(true)
  })
})

describe('request states over raw 2026-07-28 requests', () => {
  it('round 1 is an input_required result with one form elicitation asking for confirm: boolean', async () => {
    const { sub, token } = await editor('shape')
    const order = await orderIn('pending')
    const first = await ask(token, order.id)
    expect(Object.keys(first.inputRequests)).toEqual(['confirm'])
    expect(first.inputRequests['confirm']!.method).toBe('elicitation/create')
    expect(first.inputRequests['confirm']!.params.requestedSchema).toMatchObject({ type: 'object', properties: { confirm: { type: 'boolean' } }, required: ['confirm'] })
    expect(first.requestState).toMatch(/^v1\./)
    expect(await statusOf(order.id)).toBe('pending')
    const [row] = await rowsOf(sub)
    expect(row!.outcome).toBe('confirmation_requested')
    expect(JSON.parse(row!.output_excerpt!)).toMatchObject({ question: first.inputRequests['confirm']!.params.message })
  })

  it('refuses a replayed request state: one confirmation allows one call', async () => {
    const { sub, token } = await editor('replay')
    const order = await orderIn('pending')
    const { requestState } = await ask(token, order.id)
    expect((await answer(token, order.id, requestState, YES)).isError).toBeFalsy()
    expect(await statusOf(order.id)).toBe('cancelled')
    await setStatus(order.id, 'pending')
    const again = await answer(token, order.id, requestState, YES)
    expect(again.content[0]?.text).toBe('This confirmation was already used: each one allows one update_order call. Nothing was changed; call update_order again to ask again.')
    expect(await statusOf(order.id)).toBe('pending')
    expect((await rowsOf(sub)).map((r) => [r.outcome, r.error_code])).toEqual([['confirmation_requested', null], ['confirmed', null], ['invalid_input', 'confirmation_used']])
  })

  it('refuses a tampered request state and writes nothing', async () => {
    const { sub, token } = await editor('tamper')
    const order = await orderIn('pending')
    const { requestState } = await ask(token, order.id)
    const [version, body, mac] = requestState.split('.')
    const payload = JSON.parse(atob(body!.replaceAll('-', '+').replaceAll('_', '/'))) as { p: Record<string, unknown> }
    payload.p['expiresAt'] = Number(payload.p['expiresAt']) + 3600
    const forged = `${version}.${btoa(JSON.stringify(payload)).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '')}.${mac}`
    const flipped = `${requestState.slice(0, -2)}${requestState.at(-2) === 'A' ? 'B' : 'A'}${requestState.at(-1)}`
    for (const state of [forged, flipped, 'v1.e30.AAAA', 'not-a-state']) {
      const result = await answer(token, order.id, state, YES)
      expect(result.content[0]?.text, state).toBe('The confirmation state of this call is not one this server issued (it does not verify). Nothing was changed.')
    }
    expect(await statusOf(order.id)).toBe('pending')
    expect((await rowsOf(sub)).map((r) => r.error_code)).toEqual([null, 'confirmation_invalid', 'confirmation_invalid', 'confirmation_invalid', 'confirmation_invalid'])
  })

  it('refuses a state issued for another order, or to another caller', async () => {
    const { token } = await editor('mismatch')
    const other = await editor('mismatch-other')
    const order = await orderIn('pending')
    const second = (await E.DB.prepare("SELECT id FROM orders WHERE status = 'pending' AND id != ?1 LIMIT 1").bind(order.id).first<{ id: string }>())!
    const { requestState } = await ask(token, order.id)
    const mismatch = 'The confirmation state was issued for another call (another caller, tool or arguments), not for this update_order call. Nothing was changed.'
    expect((await answer(token, second.id, requestState, YES)).content[0]?.text).toBe(mismatch)
    expect((await answer(other.token, order.id, requestState, YES)).content[0]?.text).toBe(mismatch)
    expect(await statusOf(order.id)).toBe('pending')
    expect(await statusOf(second.id)).toBe('pending')
  })

  it('an answer after the state expired changes nothing and is audited as expired', async () => {
    const { sub, token } = await editor('expired')
    const order = await orderIn('pending')
    const short = { CONFIRM_TTL_SECONDS: '1' }
    const { requestState } = await ask(token, order.id, short)
    await new Promise((resolve) => setTimeout(resolve, 2100))
    const result = await answer(token, order.id, requestState, YES, short)
    expect(result.content[0]?.text).toBe('The confirmation of this update_order call expired (it is valid for 1 s). Nothing was changed; call update_order again to ask again.')
    expect(await statusOf(order.id)).toBe('pending')
    expect((await rowsOf(sub)).map((r) => r.outcome)).toEqual(['confirmation_requested', 'expired'])
  })

  it('a state minted under another CONFIRM_STATE_KEY does not verify', async () => {
    const { token } = await editor('rekey')
    const order = await orderIn('pending')
    const { requestState } = await ask(token, order.id, { CONFIRM_STATE_KEY: 'k'.repeat(40) })
    expect((await answer(token, order.id, requestState, YES)).content[0]?.text).toMatch(/^The confirmation state of this call is not one this server issued/)
    expect(await statusOf(order.id)).toBe('pending')
  })

  it('refuses a confirmed change the data has moved away from (pending when asked, paid when confirmed)', async () => {
    const { token } = await editor('stale')
    const order = await orderIn('pending')
    const { requestState } = await ask(token, order.id)
    await setStatus(order.id, 'paid')
    const result = await answer(token, order.id, requestState, YES)
    expect(result.content[0]?.text).toMatch(/^What this update_order call would change is no longer what the user confirmed \(the data changed meanwhile\): now "Change order .* from paid to cancelled\?/)
    expect(await statusOf(order.id)).toBe('paid')
  })

  it('the confirmed write itself checks the change: an order moved after the last check is not cancelled', async () => {
    const { sub } = await editor('write-race')
    const order = await orderIn('pending')
    const principal = { sub, scopes: new Set(['orders:write']), roles: ['editor'], tokenId: 't', clientId: undefined, claims: new Map() }
    const scope: RequestScope = { requestId: crypto.randomUUID(), principal, db: E.DB, rows: new Map(), log: () => {}, call: undefined, pending: undefined, confirm: undefined }
    const args = { orderId: order.id, status: 'cancelled' as const }
    const described = await describeChange(updateOrder, POLICY.tools.get('update_order')!, args, scope, undefined)
    expect(described.ok).toBe(true)
    // another writer, between the round's last check and the tool's read
    await setStatus(order.id, 'paid')
    const result = await invokeTool(updateOrder, POLICY.tools.get('update_order')!, args, scope, undefined, described.ok ? described.text : '')
    expect(result.content[0]).toMatchObject({ text: `order ${order.id} changed after the user confirmed (it is paid now); nothing was changed: call update_order again to ask again` })
    expect(await statusOf(order.id)).toBe('paid')
  })

  // five: the per-sub concurrency cap of tools/call (policy REQUEST_LIMITS)
  it('of 5 concurrent confirmed rounds with one state, exactly one cancels the order', async () => {
    const { sub, token } = await editor('race')
    const order = await orderIn('pending')
    const { requestState } = await ask(token, order.id)
    const results = await Promise.all(Array.from({ length: 5 }, () => answer(token, order.id, requestState, YES)))
    expect(results.filter((r) => !r.isError)).toHaveLength(1)
    expect(results.filter((r) => r.content[0]?.text?.startsWith('This confirmation was already used'))).toHaveLength(4)
    expect(await statusOf(order.id)).toBe('cancelled')
    const rows = await rowsOf(sub)
    expect(rows.filter((r) => r.outcome === 'confirmed')).toHaveLength(1)
    expect(rows.filter((r) => r.error_code === 'confirmation_used')).toHaveLength(4)
  })

  it('without CONFIRM_STATE_KEY a cancellation is refused, never run unasked', async () => {
    const { sub, token } = await editor('nokey')
    const order = await orderIn('pending')
    const res = await modernRpc({ CONFIRM_STATE_KEY: '' }, token, 'tools/call', cancel(order.id), ELICIT)
    const result = (await rpcBody(res))['result'] as ToolResult
    expect(result.content[0]?.text).toBe("update_order needs the user's confirmation for this call, and this server cannot ask for one (CONFIRM_STATE_KEY is not set). Nothing was changed.")
    expect(await statusOf(order.id)).toBe('pending')
    expect((await rowsOf(sub)).map((r) => [r.outcome, r.error_code])).toEqual([['error', 'confirmation_unavailable']])
  })
})

describe('2025-era questions over raw requests (session record, SSE stream, rendezvous)', () => {
  const LEGACY = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' }
  const post = (token: string, body: unknown, headers: Record<string, string> = {}) =>
    callWorker(MCP_URL(), { method: 'POST', headers: { ...LEGACY, authorization: `Bearer ${token}`, ...headers }, body: JSON.stringify(body) })
  const initialize = (token: string, capabilities: Record<string, unknown>) =>
    post(token, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities, clientInfo: { name: 'raw', version: '1' } } })

  /** The SSE messages of a stream, each as soon as it arrives. */
  async function* messages(response: Response): AsyncGenerator<Record<string, unknown>> {
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buffer += value
      let end: number
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const data = buffer.slice(0, end).split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('')
        buffer = buffer.slice(end + 2)
        if (data) yield JSON.parse(data) as Record<string, unknown>
      }
    }
  }

  it('initialize gives a session record only to a client that declares form elicitation', async () => {
    const { token } = await editor('session')
    expect((await initialize(token, { elicitation: { form: {} } })).headers.get('mcp-session-id')).toMatch(/^v1\./)
    expect((await initialize(token, { elicitation: {} })).headers.get('mcp-session-id')).toMatch(/^v1\./)
    expect((await initialize(token, {})).headers.get('mcp-session-id')).toBeNull()
    expect((await initialize(token, { elicitation: { url: {} } })).headers.get('mcp-session-id')).toBeNull()
    // the fuzz's find: initialize sent as a notification (no id), and with params that are no initialize's
    const notification = await post(token, { jsonrpc: '2.0', method: 'initialize', params: { capabilities: { elicitation: {} } } })
    expect(notification.status).toBeLessThan(500)
    expect(notification.headers.get('mcp-session-id')).toBeNull()
    const malformed = await post(token, { jsonrpc: '2.0', id: 3, method: 'initialize', params: { x: 1 } })
    expect(malformed.status).toBeLessThan(500)
    expect(malformed.headers.get('mcp-session-id')).toBeNull()
  })

  it('a forged or another caller\'s session record is worth nothing: the call is refused, not asked', async () => {
    const { token } = await editor('forged')
    const other = await editor('forged-other')
    const order = await orderIn('pending')
    const theirs = (await initialize(other.token, { elicitation: {} })).headers.get('mcp-session-id')!
    for (const session of [theirs, `${theirs.slice(0, -3)}AAA`]) {
      const res = await post(token, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: cancel(order.id) }, { 'mcp-session-id': session })
      const body = (await rpcBody(res))['result'] as ToolResult
      expect(body.content[0]?.text).toMatch(/this client cannot ask its user/)
    }
    expect(await statusOf(order.id)).toBe('pending')
  })

  it('an answer posted by another caller is not taken; the unanswered question expires and nothing changes', async () => {
    const { sub, token } = await editor('steal')
    const thief = await editor('steal-thief')
    const order = await orderIn('pending')
    const short = { CONFIRM_TTL_SECONDS: '1' }
    const session = (await initialize(token, { elicitation: {} })).headers.get('mcp-session-id')!
    const base = testEnv(env)
    const ctx = createExecutionContext()
    const asking = await worker.fetch(
      new Request(base.AUTH_AUDIENCE, { method: 'POST', headers: { ...LEGACY, authorization: `Bearer ${token}`, 'mcp-session-id': session }, body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: cancel(order.id) }) }),
      { ...base, ...short },
      ctx,
    )
    expect(asking.headers.get('content-type')).toContain('text/event-stream')
    const stream = messages(asking)
    const question = (await stream.next()).value as { id: string; method: string; params: { message: string } }
    expect(question.method).toBe('elicitation/create')
    expect(question.id).toMatch(/^bastion-elicit-[0-9a-f-]{36}$/)
    const stolen = await post(thief.token, { jsonrpc: '2.0', id: question.id, result: { action: 'accept', content: { confirm: true } } })
    expect(stolen.status).toBe(202)
    const last = (await stream.next()).value as { id: number; result: ToolResult }
    expect(last.id).toBe(9)
    expect(last.result.content[0]?.text).toMatch(/^The confirmation of this update_order call expired/)
    await waitOnExecutionContext(ctx)
    expect(await statusOf(order.id)).toBe('pending')
    expect((await rowsOf(sub)).map((r) => r.outcome)).toEqual(['confirmation_requested', 'expired'])
  })

  it('a client that leaves while asked: the question is cancelled at once, nothing changes, the call is audited declined', async () => {
    const { sub, token } = await editor('gone')
    const order = await orderIn('pending')
    const session = (await initialize(token, { elicitation: {} })).headers.get('mcp-session-id')!
    const base = testEnv(env)
    const ctx = createExecutionContext()
    const asking = await worker.fetch(
      new Request(base.AUTH_AUDIENCE, { method: 'POST', headers: { ...LEGACY, authorization: `Bearer ${token}`, 'mcp-session-id': session }, body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: cancel(order.id) }) }),
      base,
      ctx,
    )
    const reader = asking.body!.getReader()
    let seen = ''
    while (!seen.includes('elicitation/create')) seen += new TextDecoder().decode((await reader.read()).value)
    await reader.cancel()
    await waitOnExecutionContext(ctx)
    expect(await statusOf(order.id)).toBe('pending')
    expect((await rowsOf(sub)).map((r) => [r.outcome, r.error_code])).toEqual([['confirmation_requested', null], ['declined', 'confirmation_cancel']])
  })

  it('the answer POST of the asking caller completes the stream with the confirmed result', async () => {
    const { sub, token } = await editor('raw-yes')
    const order = await orderIn('paid')
    const session = (await initialize(token, { elicitation: { form: {} } })).headers.get('mcp-session-id')!
    const asking = await post(token, { jsonrpc: '2.0', id: 11, method: 'tools/call', params: cancel(order.id) }, { 'mcp-session-id': session })
    const stream = messages(asking)
    const question = (await stream.next()).value as { id: string }
    expect((await post(token, { jsonrpc: '2.0', id: question.id, result: { action: 'accept', content: { confirm: true } } }, { 'mcp-session-id': session })).status).toBe(202)
    const last = (await stream.next()).value as { id: number; result: ToolResult }
    expect(last.result.isError, last.result.content[0]?.text).toBeFalsy()
    expect(await statusOf(order.id)).toBe('cancelled')
    expect((await rowsOf(sub)).map((r) => r.outcome)).toEqual(['confirmation_requested', 'confirmed'])
  })
})
