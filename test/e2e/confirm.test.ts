// Confirmation of destructive calls against the real server (`npm run dev`)
// over real HTTP, with the real SDK clients answering as the user would:
// SDK v2 on 2026-07-28 (multi-round-trip requests) and on 2025-11-25, and
// SDK v1 on 2025-11-25 (elicitation on the call's SSE stream, the answer as a
// POST of its own, through the session record and the rendezvous object).
// The order's status is read back through execute_query as an admin.
import { Client as V2Client, StreamableHTTPClientTransport as V2Transport } from '@modelcontextprotocol/client'
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { connectV2, NEWEST_REVISION, structured } from './support/mcp.ts'
import { startDevServer, type DevServer } from './support/server.ts'

type Answer = { action: 'accept'; content: { confirm: boolean } } | { action: 'decline' | 'cancel' }
type Era = 'v2 on 2026-07-28' | 'v2 on 2025-11-25' | 'v1 on 2025-11-25'
interface ToolResult {
  isError?: boolean
  content: { type: string; text?: string }[]
}

let server: DevServer
const open: { close(): Promise<void> }[] = []
beforeAll(async () => {
  server = await startDevServer()
})
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((c) => c.close()))
})
afterAll(async () => {
  await server?.stop()
})

let admin: V2Client | undefined
async function sql<T>(query: string, row: z.ZodType<T>): Promise<T[]> {
  admin ??= await connectV2(server.mcpUrl, await server.token({ role: 'admin', sub: 'e2e-confirm-admin' }))
  return structured(await admin.callTool({ name: 'execute_query', arguments: { query } }), z.object({ rows: z.array(row) })).rows
}
const Id = z.object({ id: z.string() })
const taken = new Set<string>()
/** A pending order no other test of this file has used. */
async function pendingOrder(): Promise<string> {
  const id = (await sql("SELECT id FROM orders WHERE status = 'pending' ORDER BY id", Id)).map((r) => r.id).find((i) => !taken.has(i))
  expect(id, 'a pending order').toBeDefined()
  taken.add(id!)
  return id!
}
const statusOf = async (id: string) => (await sql(`SELECT status FROM orders WHERE id = '${id}'`, z.object({ status: z.string() })))[0]!.status

/** A client of `era` for an editor; `answer` plays the user (undefined: no elicitation capability). */
async function editor(era: Era, answer?: (message: string) => Answer): Promise<{ call(name: string, args: Record<string, unknown>): Promise<ToolResult> }> {
  const token = await server.token({ role: 'editor', sub: `e2e-confirm-${crypto.randomUUID().slice(0, 8)}` })
  const headers = { authorization: `Bearer ${token}` }
  if (era === 'v1 on 2025-11-25') {
    const client = new V1Client({ name: 'bastion-e2e-v1', version: '1.0.0' }, { capabilities: answer ? { elicitation: {} } : {} })
    if (answer) client.setRequestHandler(ElicitRequestSchema, (request) => answer((request.params as { message: string }).message))
    await client.connect(new V1Transport(new URL(server.mcpUrl), { requestInit: { headers } }))
    open.push(client)
    return { call: async (name, args) => (await client.callTool({ name, arguments: args })) as ToolResult }
  }
  const client = new V2Client(
    { name: 'bastion-e2e-v2', version: '1.0.0' },
    { ...(era === 'v2 on 2026-07-28' ? { versionNegotiation: { mode: { pin: NEWEST_REVISION } } } : {}), ...(answer ? { capabilities: { elicitation: { form: {} } } } : {}) },
  )
  if (answer) client.setRequestHandler('elicitation/create', (request) => answer((request.params as { message: string }).message))
  await client.connect(new V2Transport(new URL(server.mcpUrl), { requestInit: { headers } }))
  open.push(client)
  return { call: async (name, args) => (await client.callTool({ name, arguments: args })) as ToolResult }
}

describe.each(['v2 on 2026-07-28', 'v2 on 2025-11-25', 'v1 on 2025-11-25'] as const)('cancelling an order with the SDK %s', (era) => {
  it('the user is asked what will change and confirms: the order is cancelled', async () => {
    const orderId = await pendingOrder()
    const asked: string[] = []
    const c = await editor(era, (message) => {
      asked.push(message)
      return { action: 'accept', content: { confirm: true } }
    })
    const result = await c.call('update_order', { orderId, status: 'cancelled' })
    expect(result.isError, result.content[0]?.text).toBeFalsy()
    expect(asked).toEqual([expect.stringMatching(new RegExp(`^Change order ${orderId} \\(customer cus_\\d+, .*\\) from pending to cancelled\\? cancelled is final`))])
    expect(await statusOf(orderId)).toBe('cancelled')
  })

  it('the user declines: nothing changes', async () => {
    const orderId = await pendingOrder()
    const c = await editor(era, () => ({ action: 'decline' }))
    const result = await c.call('update_order', { orderId, status: 'cancelled' })
    expect(result.content[0]?.text).toBe('The user declined: update_order did not run and nothing was changed.')
    expect(await statusOf(orderId)).toBe('pending')
  })

  it('a client without the elicitation capability is refused, naming the need', async () => {
    const orderId = await pendingOrder()
    const c = await editor(era)
    const result = await c.call('update_order', { orderId, status: 'cancelled' })
    expect(result.isError).toBe(true)
    expect(result.content[0]?.text).toMatch(/this client cannot ask its user: it did not declare the elicitation capability \(form mode\)\. Nothing was changed\./)
    expect(await statusOf(orderId)).toBe('pending')
  })
})

describe('request states over real HTTP (2026-07-28)', () => {
  const call = (token: string, params: Record<string, unknown>) =>
    fetch(server.mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': NEWEST_REVISION, 'mcp-method': 'tools/call', 'mcp-name': 'update_order', authorization: `Bearer ${token}` },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': NEWEST_REVISION, 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } } },
      }),
    }).then(async (r) => (await r.json()) as { result: { requestState?: string; isError?: boolean; content?: { text: string }[] } })

  it('a replayed or tampered request state is refused and nothing is written', async () => {
    const token = await server.token({ role: 'editor', sub: 'e2e-confirm-replay' })
    const orderId = await pendingOrder()
    const args = { name: 'update_order', arguments: { orderId, status: 'cancelled' } }
    const { requestState } = (await call(token, args)).result
    expect(requestState).toMatch(/^v1\./)
    const yes = { inputResponses: { confirm: { action: 'accept', content: { confirm: true } } } }
    const tampered = await call(token, { ...args, ...yes, requestState: `${requestState!.slice(0, -4)}AAAA` })
    expect(tampered.result.content?.[0]?.text).toMatch(/^The confirmation state of this call is not one this server issued/)
    expect(await statusOf(orderId)).toBe('pending')
    expect((await call(token, { ...args, ...yes, requestState })).result.isError).toBeFalsy()
    expect(await statusOf(orderId)).toBe('cancelled')
    const replayed = await call(token, { ...args, ...yes, requestState })
    expect(replayed.result.content?.[0]?.text).toMatch(/^This confirmation was already used/)
  })
})
