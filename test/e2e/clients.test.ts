// The real server (`npm run dev`: wrangler dev + seeded local D1) driven by
// real MCP clients — SDK v2 on the 2026-07-28 revision, SDK v1 on 2025-11-25 —
// and by plain HTTP for the README's promises about the endpoints.
import { InsufficientScopeError, type Client } from '@modelcontextprotocol/client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ROOT } from '../../scripts/lib/dev-env.ts'
import { connectV1, connectV2, Customer, NEWEST_REVISION, Order, OrderStatus, Product, SearchHit, structured, Ticket, ToolList, toolError, toolNames } from './support/mcp.ts'
import { run } from './support/run.ts'
import { startDevServer, type DevServer, type Role } from './support/server.ts'

const ALL_TOOLS = ['get_customer', 'list_orders', 'search_products', 'update_order', 'create_ticket', 'search', 'execute_query']
const ROLE_TOOLS: Record<Role, string[]> = {
  'read-only': ['get_customer', 'list_orders', 'search_products'],
  editor: ['get_customer', 'list_orders', 'update_order', 'create_ticket'],
  admin: ALL_TOOLS,
}
const SCOPES = ['customers:read', 'orders:read', 'products:read', 'orders:write', 'tickets:write', 'search:read', 'sql:read']
const ADMIN_SUB = 'e2e-admin'

let server: DevServer
const open: { close(): Promise<void> }[] = []

beforeAll(async () => {
  server = await startDevServer()
})

afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((client) => client.close()))
})

afterAll(async () => {
  await server?.stop()
})

const http = (path: string, init: RequestInit = {}): Promise<Response> => fetch(`${server.url}${path}`, init)
const rpc = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
  body: JSON.stringify(body),
})

async function v2(opts: Role | { role: Role; sub: string }): Promise<Client> {
  const client = await connectV2(server.mcpUrl, await server.token(opts))
  open.push(client)
  return client
}

const OrderPage = z.object({ orders: z.array(Order), nextCursor: z.string().optional() })
const UpdatedOrder = z.object({ order: Order, previousStatus: z.string() })

describe('SDK v2 client on the 2026-07-28 revision', () => {
  it('connects without initialize and negotiates 2026-07-28 with mcp-bastion', async () => {
    const client = await v2('read-only')
    expect(client.getNegotiatedProtocolVersion()).toBe(NEWEST_REVISION)
    expect(client.getServerVersion()?.name).toBe('mcp-bastion')
  })

  it.each(['read-only', 'editor', 'admin'] as const)('tools/list shows the %s role exactly the tools its role permits', async (role) => {
    const client = await v2(role)
    expect(toolNames(await client.listTools()).sort()).toEqual([...ROLE_TOOLS[role]].sort())
  })

  it('every listed tool is declared in full: title, description, described inputs, output schema, annotations', async () => {
    const { tools } = ToolList.parse(await (await v2('admin')).listTools())
    for (const tool of tools) {
      expect(tool.title, tool.name).toBeTruthy()
      expect(tool.description, tool.name).toBeTruthy()
      expect(tool.outputSchema, tool.name).toBeDefined()
      expect(typeof tool.annotations?.readOnlyHint, tool.name).toBe('boolean')
      for (const [field, schema] of Object.entries(tool.inputSchema.properties ?? {})) expect(schema.description, `${tool.name}.${field}`).toBeTruthy()
    }
  })

  it('get_customer returns the seeded customer as structuredContent', async () => {
    const client = await v2('admin')
    const { customer } = structured(await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_001' } }), z.object({ customer: Customer }))
    expect(customer.id).toBe('cus_001')
    expect(customer.name).not.toBe('')
    expect(customer.email).toMatch(/@[a-z]+\.example$/)
  })

  it('get_customer of an unknown id is a tool error naming the id, not a protocol error', async () => {
    const client = await v2('admin')
    expect(toolError(await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_999' } }))).toContain('cus_999 not found')
  })

  it('list_orders pages newest first and its nextCursor continues where the first page ended', async () => {
    const client = await v2('admin')
    const first = structured(await client.callTool({ name: 'list_orders', arguments: { limit: 5 } }), OrderPage)
    expect(first.orders).toHaveLength(5)
    expect(first.nextCursor).toEqual(expect.any(String))
    const second = structured(await client.callTool({ name: 'list_orders', arguments: { limit: 5, cursor: first.nextCursor } }), OrderPage)
    expect(second.orders).toHaveLength(5)
    const all = [...first.orders, ...second.orders]
    expect(new Set(all.map((o) => o.id)).size).toBe(10)
    const created = all.map((o) => o.created_at)
    expect(created).toEqual([...created].sort().reverse())
  })

  it('list_orders filters by status and customer', async () => {
    const client = await v2('admin')
    const { orders } = structured(await client.callTool({ name: 'list_orders', arguments: { status: 'shipped', limit: 20 } }), OrderPage)
    expect(orders.length).toBeGreaterThan(0)
    for (const order of orders) expect(order.status).toBe('shipped')
    const customerId = orders[0]!.customer_id
    const mine = structured(await client.callTool({ name: 'list_orders', arguments: { customerId, limit: 20 } }), OrderPage)
    expect(mine.orders.length).toBeGreaterThan(0)
    for (const order of mine.orders) expect(order.customer_id).toBe(customerId)
  })

  it('search_products finds only products matching the text', async () => {
    const client = await v2('admin')
    const { products } = structured(await client.callTool({ name: 'search_products', arguments: { query: 'Mouse', limit: 50 } }), z.object({ products: z.array(Product) }))
    expect(products.length).toBeGreaterThan(0)
    for (const p of products) expect(`${p.name} ${p.sku} ${p.category} ${p.description}`.toLowerCase()).toContain('mouse')
    expect(products.every((p) => /^prd_\d{3}$/.test(p.id))).toBe(true)
  })

  it('update_order moves a pending order to paid, persists it, and refuses an illegal move back', async () => {
    const client = await v2('admin')
    const { orders } = structured(await client.callTool({ name: 'list_orders', arguments: { status: 'pending', limit: 1 } }), OrderPage)
    const pending = orders[0]
    expect(pending?.status).toBe('pending')
    const orderId = pending!.id

    const updated = structured(await client.callTool({ name: 'update_order', arguments: { orderId, status: 'paid', note: 'paid via e2e' } }), UpdatedOrder)
    expect(updated.previousStatus).toBe('pending')
    expect(updated.order).toMatchObject({ id: orderId, status: 'paid', note: 'paid via e2e', customer_id: pending!.customer_id, total_cents: pending!.total_cents })

    const paid = structured(await client.callTool({ name: 'list_orders', arguments: { customerId: pending!.customer_id, status: 'paid', limit: 100 } }), OrderPage)
    expect(paid.orders.find((o) => o.id === orderId)).toMatchObject({ status: 'paid', note: 'paid via e2e' })

    expect(toolError(await client.callTool({ name: 'update_order', arguments: { orderId, status: 'pending' } }))).toMatch(/cannot go from paid to pending/)
  })

  it('create_ticket opens a ticket recorded as created by the token subject', async () => {
    const client = await v2({ role: 'admin', sub: ADMIN_SUB })
    const { ticket } = structured(
      await client.callTool({ name: 'create_ticket', arguments: { customerId: 'cus_002', subject: 'E2E: invoice missing', body: 'The March invoice never arrived.', priority: 'high' } }),
      z.object({ ticket: Ticket }),
    )
    expect(ticket).toMatchObject({ customer_id: 'cus_002', subject: 'E2E: invoice missing', body: 'The March invoice never arrived.', priority: 'high', status: 'open', created_by: ADMIN_SUB })
    expect(ticket.id).toMatch(/^tkt_[0-9a-f]+$/)
    expect(Date.parse(ticket.created_at)).not.toBeNaN()
  })

  it('search ranks full-text hits best first, each matching every word', async () => {
    const client = await v2('admin')
    const { results } = structured(await client.callTool({ name: 'search', arguments: { query: 'Ergonomic Mouse', limit: 20 } }), z.object({ results: z.array(SearchHit) }))
    expect(results.length).toBeGreaterThan(0)
    for (const hit of results) {
      expect(hit.kind).toBe('product')
      expect(hit.title.toLowerCase()).toContain('ergonomic mouse')
    }
    const scores = results.map((hit) => hit.score)
    expect(scores).toEqual([...scores].sort((a, b) => b - a))
  })

  it('execute_query runs one read-only SELECT over the business tables', async () => {
    const client = await v2('admin')
    const result = structured(
      await client.callTool({ name: 'execute_query', arguments: { query: 'SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status' } }),
      z.object({ columns: z.array(z.string()), rows: z.array(z.object({ status: OrderStatus, n: z.number().int() })), rowCount: z.number().int(), truncated: z.literal(false) }),
    )
    expect(result.columns).toEqual(['status', 'n'])
    expect(result.rowCount).toBe(result.rows.length)
    expect(result.rows.reduce((sum, row) => sum + row.n, 0)).toBe(300)
  })

  it.each(['DELETE FROM orders', 'SELECT * FROM audit_log', "SELECT 1; DROP TABLE orders"])('execute_query refuses %j with a reason', async (query) => {
    const client = await v2('admin')
    expect(toolError(await client.callTool({ name: 'execute_query', arguments: { query } }))).toMatch(/^query refused: \S/)
  })

  it('a tool outside the role is refused with 403 insufficient_scope naming the scope', async () => {
    const client = await v2('read-only')
    const refusal: unknown = await client.callTool({ name: 'update_order', arguments: { orderId: 'ord_0001', status: 'paid' } }).then(
      (result) => ({ unexpectedResult: result }),
      (error: unknown) => error,
    )
    expect(refusal).toBeInstanceOf(InsufficientScopeError)
    const { requiredScope, resourceMetadataUrl } = refusal as InsufficientScopeError
    expect(requiredScope).toBe('orders:write')
    expect(String(resourceMetadataUrl)).toBe(`${server.url}/.well-known/oauth-protected-resource/mcp`)
  })
})

describe('SDK v1 client on the 2025-11-25 revision', () => {
  it('initializes at 2025-11-25, lists the role tools and calls get_customer', async () => {
    const { client, transport } = await connectV1(server.mcpUrl, await server.token('editor'))
    open.push(client)
    expect(transport.protocolVersion).toBe('2025-11-25')
    expect(client.getServerVersion()?.name).toBe('mcp-bastion')
    expect(toolNames(await client.listTools()).sort()).toEqual([...ROLE_TOOLS.editor].sort())
    const { customer } = structured(await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_042' } }), z.object({ customer: Customer }))
    expect(customer.id).toBe('cus_042')
  })
})

describe('HTTP endpoints as the README promises', () => {
  const initialize = (protocolVersion: string) => ({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } })

  it('the README quick start works: a token from `npm run token` calls get_customer in one plain POST', async () => {
    const minted = await run('npm', ['run', '-s', 'token', '--', '--role', 'admin'], { cwd: ROOT, timeoutMs: 30_000, env: { BASTION_DEV_DIR: server.env.dir, PORT: String(server.env.port) } })
    expect(minted.code, minted.stderr).toBe(0)
    const token = minted.stdout.trim()
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/)
    const response = await http(
      '/mcp',
      rpc({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: 'cus_001' } } }, { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-11-25' }),
    )
    expect(response.status).toBe(200)
    const body = z.object({ result: z.unknown() }).parse(await response.json())
    expect(structured(body.result, z.object({ customer: Customer })).customer.id).toBe('cus_001')
  })

  it('GET /healthz answers 200 {"ok":true} without a token', async () => {
    const response = await http('/healthz')
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ ok: true })
  })

  it('POST /mcp without a token or body is 401 with a Bearer challenge pointing at the PRM document', async () => {
    const response = await http('/mcp', { method: 'POST' })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${server.url}/.well-known/oauth-protected-resource/mcp", scope="customers:read orders:read", DPoP algs="ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA Ed25519"`)
  })

  it('POST /mcp with an invalid token is 401 with error="invalid_token"', async () => {
    const response = await http('/mcp', rpc(initialize('2025-11-25'), { authorization: 'Bearer not.a.jwt' }))
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/)
    expect(response.headers.get('www-authenticate')).toContain(`resource_metadata="${server.url}/.well-known/oauth-protected-resource/mcp"`)
  })

  it.each(['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource'])('%s serves the RFC 9728 document with every policy scope', async (path) => {
    const response = await http(path)
    expect(response.status).toBe(200)
    const prm = z
      .object({ resource: z.string(), authorization_servers: z.array(z.string()), scopes_supported: z.array(z.string()), bearer_methods_supported: z.array(z.string()), resource_name: z.string() })
      .parse(await response.json())
    expect(prm.resource).toBe(server.mcpUrl)
    expect(prm.authorization_servers).toEqual([server.url])
    expect([...prm.scopes_supported].sort()).toEqual([...SCOPES].sort())
    expect(prm.bearer_methods_supported).toEqual(['header'])
    expect(prm.resource_name).not.toBe('')
  })

  it.each(['GET', 'DELETE'])('%s /mcp is 405 with Allow: POST (stateless server)', async (method) => {
    const response = await http('/mcp', { method, headers: { authorization: `Bearer ${await server.token('admin')}` } })
    expect(response.status).toBe(405)
    expect(response.headers.get('allow')).toBe('POST')
  })

  it.each(['2025-03-26', '2025-06-18', '2025-11-25'])('a %s initialize is answered with that revision', async (version) => {
    const response = await http('/mcp', rpc(initialize(version), { authorization: `Bearer ${await server.token('read-only')}` }))
    expect(response.status).toBe(200)
    const body = z.object({ result: z.object({ protocolVersion: z.string(), serverInfo: z.object({ name: z.string() }) }) }).parse(await response.json())
    expect(body.result).toMatchObject({ protocolVersion: version, serverInfo: { name: 'mcp-bastion' } })
  })

  it('a request from a foreign Origin is refused with 403, an allowed one passes', async () => {
    const token = await server.token('read-only')
    const foreign = await http('/mcp', rpc(initialize('2025-11-25'), { authorization: `Bearer ${token}`, origin: 'https://evil.example' }))
    expect(foreign.status).toBe(403)
    const allowed = await http('/mcp', rpc(initialize('2025-11-25'), { authorization: `Bearer ${token}`, origin: 'http://localhost:6274' }))
    expect(allowed.status).toBe(200)
  })

  it('every response carries its own X-Request-Id, success or refusal', async () => {
    const token = await server.token('read-only')
    const responses = await Promise.all([
      http('/healthz'),
      http('/.well-known/oauth-protected-resource/mcp'),
      http('/mcp', rpc(initialize('2025-11-25'), { authorization: `Bearer ${token}` })),
      http('/mcp', rpc('not json-rpc', { authorization: `Bearer ${token}` })),
      http('/mcp', { method: 'POST' }),
      http('/mcp', rpc(initialize('2025-11-25'), { authorization: `Bearer ${token}`, origin: 'https://evil.example' })),
      http('/no-such-path'),
      http('/mcp'),
    ])
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 400, 401, 403, 404, 405])
    const ids = responses.map((response) => response.headers.get('x-request-id'))
    for (const [i, id] of ids.entries()) expect(id, `${responses[i]!.url} → ${responses[i]!.status}`).toMatch(/^[\w-]{8,}$/)
    expect(new Set(ids).size).toBe(ids.length)
  })
})

describe('execute_query work budget on npm run dev', () => {
  const CROSS_JOIN = 'SELECT count(*) FROM orders a, orders b, orders c, orders d WHERE a.id <> b.id'

  it('refuses 20 four-table cross joins at once while /healthz and a legitimate query still answer', async () => {
    const call = async (sub: string, query: string) => {
      const response = await http(
        '/mcp',
        rpc({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_query', arguments: { query } } }, { authorization: `Bearer ${await server.token({ role: 'admin', sub })}`, 'mcp-protocol-version': '2025-11-25' }),
      )
      expect(response.status).toBe(200)
      return z.object({ result: z.unknown() }).parse(await response.json()).result
    }
    const attacks = Array.from({ length: 20 }, (_, i) => call(`e2e-budget-${i}`, CROSS_JOIN))
    // Before the budget, one of these froze workerd (and in production held D1) until restart.
    const health = await http('/healthz', { signal: AbortSignal.timeout(10_000) })
    expect(health.status).toBe(200)
    for (const result of await Promise.all(attacks)) {
      expect(toolError(result)).toMatch(/^query refused: this query would visit about 10¹⁰ rows .*add a join condition or a WHERE on an indexed column$/)
    }
    const legit = await call('e2e-budget-legit', 'SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = \'paid\' LIMIT 3')
    expect(structured(legit, z.object({ rowCount: z.number() })).rowCount).toBe(3)
  })
})

describe('audit log under a burst on npm run dev (issue #9)', () => {
  // 5 per subject: the policy's concurrency limit per `sub` (more would be 429s, by design).
  const SUBJECTS = 12
  const PER_SUBJECT = 5
  const WRANGLER = `${ROOT}/node_modules/.bin/wrangler`
  const QUIET = { WRANGLER_SEND_METRICS: 'false', CI: '1' }

  /** Rows of the dev server's own local D1, read the way an operator would (wrangler d1 execute). */
  async function query(sql: string): Promise<Record<string, unknown>[]> {
    const result = await run(WRANGLER, ['d1', 'execute', 'DB', '--local', '--persist-to', server.env.persistTo!, '--json', '--command', sql], { cwd: ROOT, env: QUIET, timeoutMs: 60_000 })
    expect(result.code, result.stderr).toBe(0)
    return z.array(z.object({ results: z.array(z.record(z.string(), z.unknown())) })).parse(JSON.parse(result.stdout))[0]!.results
  }

  it('every completed call of a concurrent burst from several subjects has exactly one row, and audit:verify exits 0', async () => {
    const tokens = await Promise.all(Array.from({ length: SUBJECTS }, (_, i) => server.token({ role: 'read-only', sub: `e2e-burst-${i}` })))
    // All calls at once: 60 in flight, 5 per subject.
    const responses = await Promise.all(
      tokens.flatMap((token) =>
        Array.from({ length: PER_SUBJECT }, (_, i) =>
          fetch(server.mcpUrl, {
            method: 'POST',
            headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-11-25' },
            body: JSON.stringify({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: `cus_00${(i % 5) + 1}` } } }),
          }),
        ),
      ),
    )
    expect(responses.map((r) => r.status)).toEqual(Array(SUBJECTS * PER_SUBJECT).fill(200))
    const ids = responses.map((r) => r.headers.get('x-request-id')!)
    const list = ids.map((id) => `'${id.replace(/[^\w-]/g, '')}'`).join(', ')
    // The rows land after the responses (waitUntil → sequencer → group commit): poll, bounded.
    let rows: Record<string, unknown>[] = []
    for (let attempt = 0; attempt < 10; attempt++) {
      rows = await query(`SELECT request_id, sub, outcome FROM audit_log WHERE request_id IN (${list})`)
      if (rows.length >= ids.length) break
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
    expect(rows.length).toBe(ids.length)
    expect(new Set(rows.map((r) => r['request_id'])).size).toBe(ids.length)
    expect(rows.every((r) => r['outcome'] === 'ok')).toBe(true)
    const verified = await run('npm', ['run', '--silent', 'audit:verify', '--', '--persist-to', server.env.persistTo!], { cwd: ROOT, env: QUIET, timeoutMs: 110_000 })
    expect(verified.code, verified.stdout + verified.stderr).toBe(0)
    expect(verified.stdout).toMatch(/^chain 0: audit chain OK: \d+ rows/)
  }, 240_000)
})
