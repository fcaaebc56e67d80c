// Alerts end to end: a real local webhook receiver, the real server (npm run
// dev) configured with ALERT_WEBHOOK_URL, and a real failure — the products
// table renamed away under the running server, as a bad migration would.
// A burst of failures of one tool must produce exactly one signed alert.
//
// "Exactly one" is decided by a latch, not a sleep: every alert decision of
// the burst is taken before its response is sent (the throttle is offered the
// failure in the audit middleware), so once all responses are in, any second
// alert of the burst has already started its delivery. A sentinel failure of
// another tool (create_ticket, tickets renamed away too) then produces an
// alert of its own whose delivery starts after all of those; the test waits
// until the receiver has that sentinel alert and no request in flight.
import { execFile } from 'node:child_process'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ALERT_SIGNATURE_HEADER, verifyAlertSignature } from '../../src/audit/alert.ts'
import { ROOT } from '../../scripts/lib/dev-env.ts'
import { freePorts, startDevServer, type DevServer } from './support/server.ts'

const SECRET = 'e2e-webhook-secret'
const received: { headers: IncomingHttpHeaders; body: string }[] = []
let inFlight = 0
let receiver: Server
let server: DevServer | undefined

beforeAll(async () => {
  const [port] = (await freePorts(1)) as [number]
  receiver = createServer((req, res) => {
    inFlight++
    let body = ''
    req.on('data', (chunk: Buffer) => (body += chunk.toString()))
    req.on('end', () => {
      received.push({ headers: req.headers, body })
      inFlight--
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => receiver.listen(port, '127.0.0.1', resolve))
  server = await startDevServer({ vars: { ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hook`, ALERT_WEBHOOK_SECRET: SECRET } })
})

afterAll(async () => {
  await server?.stop()
  await new Promise<void>((resolve) => receiver?.close(() => resolve()))
})

async function breakTables(dir: string): Promise<void> {
  await promisify(execFile)(
    join(ROOT, 'node_modules', '.bin', 'wrangler'),
    ['d1', 'execute', 'DB', '--local', '--persist-to', join(dir, 'state'), '--yes', '--command', 'ALTER TABLE products RENAME TO products_moved_away; ALTER TABLE tickets RENAME TO tickets_moved_away'],
    { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } },
  )
}

describe('alerts to a real webhook receiver', () => {
  it('a burst of internal errors of one tool sends exactly one signed alert', async () => {
    const s = server!
    await breakTables(s.env.dir)
    const client = new Client({ name: 'e2e-alerts', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } })
    await client.connect(new StreamableHTTPClientTransport(new URL(s.mcpUrl), { requestInit: { headers: { authorization: `Bearer ${await s.token('admin')}` } } }))
    const results = await Promise.all(Array.from({ length: 6 }, () => client.callTool({ name: 'search_products', arguments: { query: 'keyboard' } })))
    for (const r of results) {
      expect(r.isError).toBe(true)
      const text = (r.content as { text: string }[])[0]!.text
      expect(text).toMatch(/^internal error \(request [0-9a-f-]{36}\)$/)
      expect(text).not.toContain('products_moved_away')
    }
    // the sentinel: a failure of another tool, after every decision of the burst was taken
    const sentinel = await client.callTool({ name: 'create_ticket', arguments: { customerId: 'cus_001', subject: 'sentinel', body: 'b' } })
    await client.close()
    expect(sentinel.isError).toBe(true)

    const bodies = () => received.map((r) => JSON.parse(r.body) as { id: string; tool: string })
    const deadline = Date.now() + 20_000
    while (!(bodies().some((b) => b.tool === 'create_ticket') && inFlight === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(bodies().map((b) => b.tool).sort()).toEqual(['create_ticket', 'search_products'])
    expect(new Set(bodies().map((b) => b.id)).size).toBe(2)
    for (const r of received) expect(r.headers['idempotency-key']).toBe(JSON.parse(r.body).id)
    const alert = received.find((r) => JSON.parse(r.body).tool === 'search_products')
    const signature = alert!.headers[ALERT_SIGNATURE_HEADER.toLowerCase()]
    expect(typeof signature).toBe('string')
    expect(await verifyAlertSignature(alert!.body, signature as string, SECRET, Math.floor(Date.now() / 1000))).toBe(true)
    expect(await verifyAlertSignature(alert!.body, signature as string, 'not-the-secret', Math.floor(Date.now() / 1000))).toBe(false)
    expect(JSON.parse(alert!.body)).toMatchObject({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), kind: 'error', tool: 'search_products', count: 1 })
  })
})
