// Row scope through the whole Worker (ROW_SCOPE, src/policy/row-scope.ts):
// two customers' agents, each with a token carrying its `customer` claim,
// under a "customer portal" scope on the demo tables
//   customers.id = claim.customer, orders.customer_id = claim.customer,
//   tickets.customer_id = claim.customer   (admin exempt)
// see only their own rows through every tool that reads them — the declared
// get_customer, the hand-written list_orders / update_order / create_ticket,
// search, and execute_query (joins, subqueries, CTEs, UNION, aggregates) —
// and a model argument naming the other customer's ids gets nothing. A token
// without the claim is refused with a message naming it. Expected rows are
// read from D1 directly with the filter written out by hand.
import { env } from 'cloudflare:workers'
import { beforeAll, describe, expect, it } from 'vitest'
import { mintToken } from '../support/tokens.ts'
import { testEnv } from '../support/test-env.ts'
import { rpcWith } from '../support/worker.ts'

const BASE = testEnv(env)
const DB = BASE.DB
const SCOPED = {
  ROW_SCOPE: 'customers.id=claim.customer, orders.customer_id=claim.customer, tickets.customer_id=claim.customer',
  ROW_SCOPE_EXEMPT_ROLES: 'admin',
}
const ALL_SCOPES = 'customers:read orders:read products:read orders:write tickets:write search:read sql:read'

interface ToolResult {
  isError?: boolean
  structuredContent?: Record<string, unknown>
  content: { type: string; text: string }[]
}

async function callTool(token: string, name: string, args: Record<string, unknown>, settings: Record<string, string> = SCOPED): Promise<ToolResult> {
  const res = await rpcWith(settings, token, 'tools/call', { name, arguments: args })
  expect(res.status).toBe(200)
  return ((await res.json()) as { result: ToolResult }).result
}

const ok = (r: ToolResult) => {
  expect(r.isError, r.content[0]?.text).toBeFalsy()
  return r.structuredContent!
}
const query = async (token: string, sql: string) => ok(await callTool(token, 'execute_query', { query: sql })) as { rows: Record<string, unknown>[] }
const ids = async (sql: string, ...params: string[]) => (await DB.prepare(sql).bind(...params).all<{ id: string }>()).results.map((r) => r.id).sort()

/** The two customers with the most orders: each agent has rows to see, and the other's to miss. */
let A: string
let B: string
let tokenA: string
let tokenB: string

beforeAll(async () => {
  const top = (await DB.prepare('SELECT customer_id AS id FROM orders GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 2').all<{ id: string }>()).results
  A = top[0]!.id
  B = top[1]!.id
  tokenA = await mintToken({ sub: 'agent-a', scope: ALL_SCOPES, claims: { customer: A } })
  tokenB = await mintToken({ sub: 'agent-b', scope: ALL_SCOPES, claims: { customer: B } })
})

describe('row scope: each customer sees only its rows', () => {
  it('get_customer (declared): its own record, and "not found" for the other customer', async () => {
    expect(ok(await callTool(tokenA, 'get_customer', { customerId: A }))).toMatchObject({ customer: { id: A } })
    const other = await callTool(tokenA, 'get_customer', { customerId: B })
    expect(other).toMatchObject({ isError: true, content: [{ text: `customer ${B} not found` }] })
  })

  it('list_orders: exactly its orders; asking for the other customer gets none', async () => {
    for (const [token, me] of [[tokenA, A], [tokenB, B]] as const) {
      const page = ok(await callTool(token, 'list_orders', { limit: 100 })) as { orders: { id: string; customer_id: string }[] }
      expect(page.orders.map((o) => o.id).sort()).toEqual(await ids('SELECT id FROM orders WHERE customer_id = ?1', me))
    }
    expect(ok(await callTool(tokenA, 'list_orders', { customerId: B, limit: 100 }))).toEqual({ orders: [] })
  })

  it('search: only its own customer and orders among the hits; products stay shared', async () => {
    const own = (await DB.prepare('SELECT name FROM customers WHERE id = ?1').bind(A).first<{ name: string }>())!.name
    const other = (await DB.prepare('SELECT name FROM customers WHERE id = ?1').bind(B).first<{ name: string }>())!.name
    const hits = (ok(await callTool(tokenA, 'search', { query: own, limit: 50 })) as { results: { kind: string; id: string }[] }).results
    expect(hits.some((h) => h.kind === 'customer' && h.id === A)).toBe(true)
    const foreign = (ok(await callTool(tokenA, 'search', { query: other, limit: 50 })) as { results: { kind: string; id: string }[] }).results
    expect(foreign.filter((h) => h.kind === 'customer' && h.id !== A)).toEqual([])
    const orders = (ok(await callTool(tokenA, 'search', { query: 'pending', limit: 50 })) as { results: { kind: string; id: string }[] }).results.filter((h) => h.kind === 'order')
    const mine = new Set(await ids('SELECT id FROM orders WHERE customer_id = ?1', A))
    expect(orders.every((h) => mine.has(h.id))).toBe(true)
    const product = (await DB.prepare('SELECT name FROM products ORDER BY id LIMIT 1').first<{ name: string }>())!.name
    const shared = ok(await callTool(tokenA, 'search', { query: product, limit: 5 })) as { results: { kind: string }[] }
    expect(shared.results.map((h) => h.kind), JSON.stringify(shared)).toContain('product')
  })

  it.each([
    ['a plain read', 'SELECT id FROM orders', 'SELECT id FROM orders WHERE customer_id = ?1'],
    ['a join', 'SELECT o.id FROM customers c JOIN orders o ON o.customer_id = c.id', 'SELECT id FROM orders WHERE customer_id = ?1'],
    ['a subquery', 'SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers)', 'SELECT id FROM orders WHERE customer_id = ?1'],
    ['a CTE', 'WITH mine AS (SELECT * FROM main.orders) SELECT id FROM mine', 'SELECT id FROM orders WHERE customer_id = ?1'],
    ['a UNION', 'SELECT id FROM customers UNION SELECT customer_id FROM orders', 'SELECT id FROM customers WHERE id = ?1'],
    ['a correlated EXISTS', 'SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)', 'SELECT id FROM customers WHERE id = ?1'],
    ['IN <table>', "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM \"ORDERS\")", 'SELECT id FROM customers WHERE id = ?1'],
  ])('execute_query, %s: only its rows', async (_, sql, expected) => {
    const rows = (await query(tokenA, sql)).rows.map((r) => String(r['id'])).sort()
    expect(rows).toEqual(await ids(expected, A))
  })

  it('execute_query aggregates count only its rows', async () => {
    const { rows } = await query(tokenA, 'SELECT count(*) AS n, sum(total_cents) AS cents, (SELECT count(*) FROM customers) AS customers FROM orders')
    const expected = await DB.prepare('SELECT count(*) AS n, sum(total_cents) AS cents FROM orders WHERE customer_id = ?1').bind(A).first<{ n: number; cents: number }>()
    expect(rows).toEqual([{ ...expected, customers: 1 }])
  })

  it("execute_query naming the other customer's id gets nothing", async () => {
    expect((await query(tokenA, `SELECT * FROM orders WHERE customer_id = '${B}'`)).rows).toEqual([])
    expect((await query(tokenA, `SELECT * FROM customers WHERE id = '${B}'`)).rows).toEqual([])
  })

  it("update_order cannot touch the other customer's order, and changes its own", async () => {
    const theirs = (await DB.prepare("SELECT id, status FROM orders WHERE customer_id = ?1 AND status = 'pending' LIMIT 1").bind(B).first<{ id: string }>())!
    const refused = await callTool(tokenA, 'update_order', { orderId: theirs.id, status: 'cancelled' })
    expect(refused).toMatchObject({ isError: true, content: [{ text: `order ${theirs.id} not found` }] })
    expect(await DB.prepare('SELECT status FROM orders WHERE id = ?1').bind(theirs.id).first('status')).toBe('pending')
    const mine = (await DB.prepare("SELECT id FROM orders WHERE customer_id = ?1 AND status = 'pending' LIMIT 1").bind(A).first<{ id: string }>())!
    expect(ok(await callTool(tokenA, 'update_order', { orderId: mine.id, status: 'paid' }))).toMatchObject({ order: { id: mine.id, status: 'paid' } })
  })

  it('create_ticket only for its own customer; the ticket is then visible to it and not to the other', async () => {
    const refused = await callTool(tokenA, 'create_ticket', { customerId: B, subject: 'not mine', body: 'x' })
    expect(refused).toMatchObject({ isError: true, content: [{ text: `customer ${B} not found` }] })
    expect(await DB.prepare("SELECT count(*) AS n FROM tickets WHERE subject = 'not mine'").first('n')).toBe(0)
    const created = ok(await callTool(tokenA, 'create_ticket', { customerId: A, subject: 'row scope', body: 'mine' })) as { ticket: { id: string } }
    expect((await query(tokenA, 'SELECT id FROM tickets')).rows.map((r) => r['id'])).toContain(created.ticket.id)
    expect((await query(tokenB, 'SELECT id FROM tickets')).rows.map((r) => r['id'])).not.toContain(created.ticket.id)
  })

  it("create_ticket refuses a ticket for another customer when only tickets are scoped, and writes nothing", async () => {
    const ticketsOnly = { ROW_SCOPE: 'tickets.customer_id=claim.customer' }
    const refused = await callTool(tokenA, 'create_ticket', { customerId: B, subject: 'tickets-only scope', body: 'x' }, ticketsOnly)
    expect(refused).toMatchObject({ isError: true, content: [{ text: `customer ${B} not found` }] })
    expect(await DB.prepare("SELECT count(*) AS n FROM tickets WHERE subject = 'tickets-only scope'").first('n')).toBe(0)
    expect(ok(await callTool(tokenA, 'create_ticket', { customerId: A, subject: 'tickets-only scope', body: 'x' }, ticketsOnly))).toMatchObject({ ticket: { customer_id: A } })
  })

  it('an exempt role (admin) reads every row', async () => {
    const admin = await mintToken({ sub: 'admin-1', role: 'admin' })
    const { rows } = await query(admin, 'SELECT count(*) AS n FROM orders')
    expect(rows).toEqual([{ n: await DB.prepare('SELECT count(*) AS n FROM orders').first('n') }])
  })
})

describe('row scope: a token without the claim', () => {
  it('is refused, with the claim named, by every tool that reads a scoped table; unscoped tables still work', async () => {
    const token = await mintToken({ sub: 'agent-c', scope: ALL_SCOPES })
    for (const [tool, args] of [
      ['get_customer', { customerId: 'cus_001' }],
      ['list_orders', {}],
      ['search', { query: 'a' }],
      ['execute_query', { query: 'SELECT count(*) AS n FROM orders' }],
    ] as const) {
      const result = await callTool(token, tool, args)
      expect(result.isError, tool).toBe(true)
      expect(result.content[0]!.text, tool).toMatch(/customer claim of your token|token's customer claim/)
    }
    expect(ok(await callTool(token, 'search_products', { query: 'a' }))).toHaveProperty('products')
    expect((await query(token, 'SELECT count(*) AS n FROM products')).rows).toHaveLength(1)
  })

  it('refuses a claim that is not a single string or number', async () => {
    const token = await mintToken({ sub: 'agent-d', scope: ALL_SCOPES, claims: { customer: [A, B] } })
    expect(await callTool(token, 'get_customer', { customerId: A })).toMatchObject({ isError: true })
  })

  it('a bad ROW_SCOPE makes every request answer 500 server misconfigured, never serve unscoped', async () => {
    const res = await rpcWith({ ROW_SCOPE: 'audit_log.sub=claim.sub' }, tokenA, 'tools/call', { name: 'execute_query', arguments: { query: 'SELECT id FROM orders' } })
    expect(res.status).toBe(500)
    expect(await res.text()).toMatch(/server misconfigured/)
  })
})
