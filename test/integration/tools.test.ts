// Every tool through the whole Worker, driven by a real MCP SDK v2 client:
// happy paths checked against the D1 rows (the truth), bad inputs refused as
// tool errors naming the field, and no internals ever leaking into a result.
// Other test files share the database, so rows that may change are chosen by
// querying D1 (e.g. "some pending order") and every client has its own `sub`.
import type { Client } from '@modelcontextprotocol/client'
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it } from 'vitest'
import type { Customer as CustomerRow, Order as OrderRow, Product as ProductRow } from '../../src/db/queries.ts'
import { testEnv } from '../support/test-env.ts'
import { mintToken } from '../support/tokens.ts'
import { connectClient } from '../support/worker.ts'

const DB = () => testEnv(env).DB

type Era = 'modern' | 'legacy'

interface TicketRow {
  id: string
  customer_id: string
  subject: string
  body: string
  priority: string
  status: string
  created_by: string
  created_at: string
}

interface SearchHit {
  kind: 'customer' | 'order' | 'product'
  id: string
  title: string
  snippet: string
  score: number
}

interface ToolResult {
  isError?: boolean
  content: { type: string; text?: string }[]
  structuredContent?: unknown
  _meta?: Record<string, unknown>
}

interface Session {
  client: Client
  token: string
  sub: string
  call: (name: string, args: Record<string, unknown>) => Promise<ToolResult>
}

const open: Client[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close().catch(() => {})))
})

/** Things a tool result must never carry. */
function expectNoLeak(result: ToolResult, token: string): void {
  const text = JSON.stringify(result)
  expect(text).not.toContain('D1_ERROR')
  expect(text).not.toMatch(/SQLITE/i)
  expect(text).not.toMatch(/\n\s*at\s|\bat\s+\S+\s+\(\S+:\d+:\d+\)/)
  expect(text).not.toMatch(/\.(ts|js|mjs):\d+/)
  expect(text).not.toContain(token)
  expect(text).not.toContain(token.split('.')[2]!)
}

/** An admin client with a fresh `sub` (so rate limits of other tests never interfere). */
async function session(era: Era = 'modern', role = 'admin'): Promise<Session> {
  const sub = `tools-test-${crypto.randomUUID()}`
  const token = await mintToken({ role, sub })
  const client = await connectClient(token, era)
  open.push(client)
  return {
    client,
    token,
    sub,
    async call(name, args) {
      const result = (await client.callTool({ name, arguments: args })) as ToolResult
      expectNoLeak(result, token)
      return result
    },
  }
}

function textOf(result: ToolResult): string {
  return result.content.map((c) => c.text ?? '').join('\n')
}

/** Items the output cap dropped from `result` (0 when it was not cut). */
function dropped(result: ToolResult): number {
  const meta = result._meta?.['io.bastion/truncation'] as { droppedItems: number } | undefined
  return meta?.droppedItems ?? 0
}

function data<T>(result: ToolResult): T {
  expect(result.isError ?? false, textOf(result)).toBe(false)
  return result.structuredContent as T
}

/** A tool error whose message matches `pattern`. */
function expectToolError(result: ToolResult, pattern: RegExp | string): string {
  expect(result.isError).toBe(true)
  const text = textOf(result)
  if (typeof pattern === 'string') expect(text).toContain(pattern)
  else expect(text).toMatch(pattern)
  expect(text).not.toMatch(/internal error/i)
  return text
}

async function one<T>(sql: string, ...params: unknown[]): Promise<T> {
  const row = await DB().prepare(sql).bind(...params).first<T>()
  if (row === null) throw new Error(`test setup: no row for ${sql} ${JSON.stringify(params)}`)
  return row
}

async function all<T>(sql: string, ...params: unknown[]): Promise<T[]> {
  return (await DB().prepare(sql).bind(...params).all<T>()).results
}

async function count(sql: string, ...params: unknown[]): Promise<number> {
  return (await one<{ n: number }>(sql, ...params)).n
}

const ORDER_COLUMNS = 'id, customer_id, product_id, quantity, total_cents, status, note, created_at, updated_at'
const PRODUCT_COLUMNS = 'id, sku, name, description, category, price_cents, stock'

/** An order currently in `status`, picked at random so parallel files rarely collide. */
function orderIn(status: string): Promise<OrderRow> {
  return one<OrderRow>(`SELECT ${ORDER_COLUMNS} FROM orders WHERE status = ?1 ORDER BY random() LIMIT 1`, status)
}

function orderRow(id: string): Promise<OrderRow> {
  return one<OrderRow>(`SELECT ${ORDER_COLUMNS} FROM orders WHERE id = ?1`, id)
}

// ---------------------------------------------------------------------------

describe.each(['modern', 'legacy'] as const)('get_customer (%s client)', (era) => {
  it('returns the customer exactly as stored', async () => {
    const s = await session(era)
    const row = await one<CustomerRow>('SELECT id, name, company, email, phone, address, tier, created_at FROM customers WHERE id = ?1', 'cus_007')
    const result = await s.call('get_customer', { customerId: 'cus_007' })
    expect(data<{ customer: CustomerRow }>(result).customer).toEqual(row)
    expect(JSON.parse(textOf(result))).toEqual({ customer: row })
  })

  it('answers an unknown id with a plain "not found" tool error', async () => {
    const s = await session(era)
    const result = await s.call('get_customer', { customerId: 'cus_999' })
    expect(result.isError).toBe(true)
    expect(textOf(result)).toBe('customer cus_999 not found')
  })
})

describe('get_customer refuses malformed input, naming the field', () => {
  it.each([
    ['an SQL injection attempt', { customerId: '1; DROP TABLE customers' }, 'customerId'],
    ['an id quoted to break out of a string', { customerId: "cus_001' OR '1'='1" }, 'customerId'],
    ['an empty id', { customerId: '' }, 'customerId'],
    ['a 65-character id', { customerId: 'cus_' + 'a'.repeat(61) }, 'customerId'],
    ['an id of another kind', { customerId: 'ord_0001' }, 'customerId'],
    ['a numeric id', { customerId: 1 }, 'customerId'],
    ['a missing id', {}, 'customerId'],
    ['an extra unknown argument', { customerId: 'cus_001', extra: 'x' }, 'extra'],
  ] as [string, Record<string, unknown>, string][])('refuses %s', async (_what, args, field) => {
    const before = await count('SELECT count(*) AS n FROM customers')
    const s = await session()
    const result = await s.call('get_customer', args)
    expectToolError(result, field)
    expect(result.structuredContent).toBeUndefined()
    expect(await count('SELECT count(*) AS n FROM customers')).toBe(before)
    expect(before).toBeGreaterThanOrEqual(60)
  })
})

// ---------------------------------------------------------------------------

describe('list_orders', () => {
  it('returns 20 orders by default, newest first, as in the database', async () => {
    const s = await session()
    const { orders, nextCursor } = data<{ orders: OrderRow[]; nextCursor?: string }>(await s.call('list_orders', {}))
    const expected = await all<{ id: string }>('SELECT id FROM orders ORDER BY created_at DESC, id DESC LIMIT 20')
    expect(orders).toHaveLength(20)
    expect(orders.map((o) => o.id)).toEqual(expected.map((o) => o.id))
    expect(typeof nextCursor).toBe('string')
    const keys = orders.map((o) => `${o.created_at}|${o.id}`)
    expect(keys).toEqual([...keys].sort().reverse())
  })

  it('returns rows equal to the stored rows', async () => {
    const s = await session()
    const { orders } = data<{ orders: OrderRow[] }>(await s.call('list_orders', { limit: 5 }))
    for (const order of orders) expect(order).toEqual(await orderRow(order.id))
  })

  it('filters by customer: every row is the customer\'s and the count is the database\'s', async () => {
    const { customer_id: customerId, n } = await one<{ customer_id: string; n: number }>(
      'SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id HAVING n BETWEEN 2 AND 20 ORDER BY n DESC, customer_id LIMIT 1',
    )
    const s = await session()
    const { orders, nextCursor } = data<{ orders: OrderRow[]; nextCursor?: string }>(await s.call('list_orders', { customerId }))
    expect(orders.every((o) => o.customer_id === customerId)).toBe(true)
    expect(orders).toHaveLength(n)
    expect(nextCursor).toBeUndefined()
  })

  it('filters by status: every row has the status and the count is the database\'s', async () => {
    const s = await session()
    for (const status of ['pending', 'paid', 'shipped', 'delivered', 'cancelled']) {
      const result = await s.call('list_orders', { status, limit: 100 })
      const { orders } = data<{ orders: OrderRow[] }>(result)
      expect(orders.length).toBeGreaterThan(0)
      expect(orders.every((o) => o.status === status)).toBe(true)
      const n = await count('SELECT count(*) AS n FROM orders WHERE status = ?1', status)
      // 100 orders, sent twice (text and structuredContent), can be over the output cap
      expect(orders.length + dropped(result)).toBe(Math.min(n, 100))
    }
  })

  it('combines the customer and status filters', async () => {
    const { customer_id: customerId, status, n } = await one<{ customer_id: string; status: string; n: number }>(
      "SELECT customer_id, status, count(*) AS n FROM orders WHERE status IN ('delivered', 'cancelled') GROUP BY customer_id, status ORDER BY n DESC, customer_id LIMIT 1",
    )
    const s = await session()
    const { orders } = data<{ orders: OrderRow[] }>(await s.call('list_orders', { customerId, status }))
    expect(orders).toHaveLength(n)
    expect(orders.every((o) => o.customer_id === customerId && o.status === status)).toBe(true)
  })

  it('returns an empty page for a customer without orders', async () => {
    const s = await session()
    expect(data<{ orders: OrderRow[] }>(await s.call('list_orders', { customerId: 'cus_999' }))).toEqual({ orders: [] })
  })

  it.each(['modern', 'legacy'] as const)('walking every page with nextCursor yields exactly the database rows, in order, once (%s client)', async (era) => {
    const { customer_id: customerId } = await one<{ customer_id: string }>(
      'SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id ORDER BY n DESC, customer_id LIMIT 1',
    )
    const expected = (await all<{ id: string }>('SELECT id FROM orders WHERE customer_id = ?1 ORDER BY created_at DESC, id DESC', customerId)).map((o) => o.id)
    expect(expected.length).toBeGreaterThan(4)
    const s = await session(era)
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = data<{ orders: OrderRow[]; nextCursor?: string }>(
        await s.call('list_orders', { customerId, limit: 2, ...(cursor ? { cursor } : {}) }),
      )
      expect(page.orders.length).toBeLessThanOrEqual(2)
      seen.push(...page.orders.map((o) => o.id))
      cursor = page.nextCursor
      pages++
    } while (cursor && pages < 100)
    expect(seen).toEqual(expected)
    expect(new Set(seen).size).toBe(seen.length)
    expect(pages).toBe(Math.ceil(expected.length / 2))
  })

  it('walking all orders 100 at a time visits every order once', async () => {
    const s = await session()
    const seen: string[] = []
    let cursor: string | undefined
    do {
      const page = data<{ orders: OrderRow[]; nextCursor?: string }>(await s.call('list_orders', { limit: 100, ...(cursor ? { cursor } : {}) }))
      seen.push(...page.orders.map((o) => o.id))
      cursor = page.nextCursor
    } while (cursor && seen.length < 10_000)
    const expected = (await all<{ id: string }>('SELECT id FROM orders ORDER BY created_at DESC, id DESC')).map((o) => o.id)
    expect(seen).toEqual(expected)
  })

  const b64u = (text: string) => btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')

  it.each([
    ['garbage', 'garbage!!'],
    ['base64url of text that is not JSON', b64u('not json')],
    ['base64url of JSON with the wrong types', b64u('{"c":1,"i":2}')],
    ['base64url of JSON with missing keys', b64u('{"c":"2026-01-01T00:00:00Z"}')],
    ['base64url of a JSON array', b64u('["2026-01-01T00:00:00Z","ord_0001"]')],
    ['a cursor with an over-long sort key', b64u(JSON.stringify({ c: 'x'.repeat(41), i: 'ord_0001' }))],
  ])('refuses a forged cursor (%s) with a clean message', async (_what, cursor) => {
    const s = await session()
    const text = expectToolError(await s.call('list_orders', { cursor }), /^cursor is not valid/)
    expect(text).toContain('nextCursor')
  })

  it('a cursor carries no authority: a crafted but well-formed cursor only pages, never widens the filter', async () => {
    const { customer_id: customerId } = await one<{ customer_id: string }>('SELECT customer_id FROM orders ORDER BY id LIMIT 1')
    const cursor = b64u(JSON.stringify({ c: "9999' OR 1=1 --", i: 'ord_9999' }))
    const s = await session()
    const { orders } = data<{ orders: OrderRow[] }>(await s.call('list_orders', { customerId, cursor, limit: 100 }))
    expect(orders.every((o) => o.customer_id === customerId)).toBe(true)
    expect(orders).toHaveLength(await count('SELECT count(*) AS n FROM orders WHERE customer_id = ?1', customerId))
  })

  it.each([
    ['limit 0', { limit: 0 }, 'limit'],
    ['limit 101', { limit: 101 }, 'limit'],
    ['limit "ten"', { limit: 'ten' }, 'limit'],
    ['a fractional limit', { limit: 2.5 }, 'limit'],
    ['a negative limit', { limit: -1 }, 'limit'],
    ['an unknown status', { status: 'lost' }, 'status'],
    ['a malformed customer id', { customerId: 'x; DELETE FROM orders' }, 'customerId'],
    ['an empty cursor', { cursor: '' }, 'cursor'],
    ['a 201-character cursor', { cursor: 'a'.repeat(201) }, 'cursor'],
    ['an extra unknown argument', { offset: 40 }, 'offset'],
  ] as [string, Record<string, unknown>, string][])('refuses %s, naming the field', async (_what, args, field) => {
    const s = await session()
    expectToolError(await s.call('list_orders', args), field)
  })
})

// ---------------------------------------------------------------------------

describe('search_products', () => {
  it('finds a product by its full name', async () => {
    const product = await one<ProductRow>(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE id = 'prd_025'`)
    const s = await session()
    const { products } = data<{ products: ProductRow[] }>(await s.call('search_products', { query: product.name }))
    expect(products.map((p) => p.id)).toContain('prd_025')
    expect(products.find((p) => p.id === 'prd_025')).toEqual(product)
  })

  it('finds a product by its SKU, case-insensitively, and only that product', async () => {
    const { sku } = await one<{ sku: string }>("SELECT sku FROM products WHERE id = 'prd_001'")
    const s = await session()
    for (const query of [sku, sku.toLowerCase()]) {
      const { products } = data<{ products: ProductRow[] }>(await s.call('search_products', { query }))
      expect(products.map((p) => p.id)).toEqual(['prd_001'])
    }
  })

  it('every product found contains the text in its name, SKU, category or description', async () => {
    const s = await session()
    const query = 'Keyboard'
    const { products } = data<{ products: ProductRow[] }>(await s.call('search_products', { query, limit: 50 }))
    const expected = await count(
      "SELECT count(*) AS n FROM products WHERE name LIKE '%keyboard%' OR sku LIKE '%keyboard%' OR description LIKE '%keyboard%' OR category LIKE '%keyboard%'",
    )
    expect(products).toHaveLength(Math.min(expected, 50))
    for (const p of products) expect(`${p.name} ${p.sku} ${p.category} ${p.description}`.toLowerCase()).toContain('keyboard')
  })

  it.each(['%', '_', '%%', '_%_', '\\', '\\%', "'"])('treats %j literally (no wildcard matches everything)', async (query) => {
    const expected = await count(
      'SELECT count(*) AS n FROM products WHERE instr(name, ?1) > 0 OR instr(sku, ?1) > 0 OR instr(description, ?1) > 0 OR instr(category, ?1) > 0',
      query,
    )
    const s = await session()
    const { products } = data<{ products: ProductRow[] }>(await s.call('search_products', { query, limit: 50 }))
    expect(products).toHaveLength(Math.min(expected, 50))
    expect(expected).toBe(0)
  })

  it('respects the limit, and defaults to 10', async () => {
    const s = await session()
    expect(data<{ products: ProductRow[] }>(await s.call('search_products', { query: 'e', limit: 3 })).products).toHaveLength(3)
    expect(data<{ products: ProductRow[] }>(await s.call('search_products', { query: 'e' })).products).toHaveLength(10)
    const fifty = await s.call('search_products', { query: 'e', limit: 50 })
    expect(data<{ products: ProductRow[] }>(fifty).products.length + dropped(fifty)).toBe(50) // the output cap may drop some
  })

  it('returns an empty list when nothing matches', async () => {
    const s = await session()
    expect(data<{ products: ProductRow[] }>(await s.call('search_products', { query: 'no such product zzzz' }))).toEqual({ products: [] })
  })

  it.each([
    ['an empty query', { query: '' }, 'query'],
    ['a blank query', { query: '   ' }, 'query'],
    ['a 201-character query', { query: 'k'.repeat(201) }, 'query'],
    ['a missing query', {}, 'query'],
    ['limit 0', { query: 'a', limit: 0 }, 'limit'],
    ['limit 51', { query: 'a', limit: 51 }, 'limit'],
    ['an extra unknown argument', { query: 'a', category: 'hardware' }, 'category'],
  ] as [string, Record<string, unknown>, string][])('refuses %s, naming the field', async (_what, args, field) => {
    const s = await session()
    expectToolError(await s.call('search_products', args), field)
  })
})

// ---------------------------------------------------------------------------

// Regression test (fixed): the tests below that make a legal move (two here, and
// "accepts a note of exactly 500 characters") fail today on the answer, not
// on the stored row.
// D1's `meta.changes` for the UPDATE counts the rows the orders_au trigger
// writes into the FTS index too (7 for one order), so updateOrderStatus() in
// src/db/queries.ts sees `changes !== 1`, the tool re-reads the already
// updated row and answers isError "order ord_X is already paid" although the
// change WAS committed.
describe.each(['modern', 'legacy'] as const)('update_order (%s client)', (era) => {
  it('moves a pending order to paid, returns it, and stores status, note and updated_at', async () => {
    const before = await orderIn('pending')
    const note = `paid by tools test ${crypto.randomUUID()}`
    const startedAt = new Date(Date.now() - 2000).toISOString()
    const s = await session(era)
    const result = await s.call('update_order', { orderId: before.id, status: 'paid', note })
    // The stored row first: it changed, whatever the tool answered.
    const after = await orderRow(before.id)
    expect(after).toMatchObject({ status: 'paid', note, customer_id: before.customer_id, total_cents: before.total_cents, created_at: before.created_at })
    expect(after.updated_at).not.toBe(before.updated_at)
    expect(after.updated_at >= startedAt.replace(/\.\d{3}Z$/, 'Z')).toBe(true)
    expect(after.updated_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    // Then the answer: the updated order, as stored.
    const { order, previousStatus } = data<{ order: OrderRow; previousStatus: string }>(result)
    expect(previousStatus).toBe('pending')
    expect(order).toEqual(after)
  })

  it('keeps the previous note when none is given', async () => {
    const before = await orderIn('paid')
    const s = await session(era)
    const result = await s.call('update_order', { orderId: before.id, status: 'shipped' })
    expect(await orderRow(before.id)).toMatchObject({ status: 'shipped', note: before.note })
    expect(data<{ order: OrderRow }>(result).order.note).toBe(before.note)
  })

  it('refuses delivered → pending, saying the order is final, and leaves the row unchanged', async () => {
    const before = await orderIn('delivered')
    const s = await session(era)
    const result = await s.call('update_order', { orderId: before.id, status: 'pending', note: 'should not be stored' })
    expectToolError(result, `order ${before.id} cannot go from delivered to pending (delivered is final)`)
    expect(await orderRow(before.id)).toEqual(before)
  })

  it('refuses shipped → paid, naming the allowed moves, and leaves the row unchanged', async () => {
    const before = await orderIn('shipped')
    const s = await session(era)
    expectToolError(await s.call('update_order', { orderId: before.id, status: 'paid' }), `cannot go from shipped to paid (allowed: delivered)`)
    expect(await orderRow(before.id)).toEqual(before)
  })

  it('refuses pending → delivered, naming the allowed moves', async () => {
    const before = await orderIn('pending')
    const s = await session(era)
    expectToolError(await s.call('update_order', { orderId: before.id, status: 'delivered' }), '(allowed: paid, cancelled)')
    expect(await orderRow(before.id)).toEqual(before)
  })
})

describe('update_order refuses bad requests without touching the row', () => {
  it('refuses a move to the status the order already has', async () => {
    const before = await orderIn('cancelled')
    const s = await session()
    expectToolError(await s.call('update_order', { orderId: before.id, status: 'cancelled', note: 'again' }), `order ${before.id} is already cancelled`)
    expect(await orderRow(before.id)).toEqual(before)
  })

  it('answers an unknown order with "not found"', async () => {
    const s = await session()
    const result = await s.call('update_order', { orderId: 'ord_9999', status: 'paid' })
    expect(result.isError).toBe(true)
    expect(textOf(result)).toBe('order ord_9999 not found')
    expect(await count("SELECT count(*) AS n FROM orders WHERE id = 'ord_9999'")).toBe(0)
  })

  it('refuses a note over 500 characters', async () => {
    const before = await orderIn('pending')
    const s = await session()
    expectToolError(await s.call('update_order', { orderId: before.id, status: 'paid', note: 'n'.repeat(501) }), 'note')
    expect(await orderRow(before.id)).toEqual(before)
  })

  it('accepts a note of exactly 500 characters', async () => {
    const before = await orderIn('pending')
    const note = 'n'.repeat(500)
    const s = await session()
    const result = await s.call('update_order', { orderId: before.id, status: 'paid', note })
    expect(await orderRow(before.id)).toMatchObject({ status: 'paid', note })
    expect(data<{ order: OrderRow }>(result).order).toMatchObject({ status: 'paid', note })
  })

  it.each([
    ['a status not in the enum', { status: 'refunded' }, 'status'],
    ['a status in the wrong case', { status: 'PAID' }, 'status'],
    ['a missing status', { status: undefined }, 'status'],
    ['an order id of another kind', { orderId: 'cus_001' }, 'orderId'],
    ['an order id with SQL in it', { orderId: "ord_0001' OR '1'='1" }, 'orderId'],
    ['a non-string note', { note: 42 }, 'note'],
    ['an extra unknown argument', { updated_at: '2000-01-01T00:00:00Z' }, 'updated_at'],
  ] as [string, Record<string, unknown>, string][])('refuses %s, naming the field', async (_what, overrides, field) => {
    const before = await orderIn('pending')
    const args: Record<string, unknown> = { orderId: before.id, status: 'paid', ...overrides }
    for (const [k, v] of Object.entries(args)) if (v === undefined) delete args[k]
    const s = await session()
    expectToolError(await s.call('update_order', args), field)
    expect(await orderRow(before.id)).toEqual(before)
  })
})

// ---------------------------------------------------------------------------

describe.each(['modern', 'legacy'] as const)('create_ticket (%s client)', (era) => {
  it('creates the ticket as the caller, with default priority normal', async () => {
    const subject = `printer on fire ${crypto.randomUUID()}`
    const s = await session(era)
    const { ticket } = data<{ ticket: TicketRow }>(await s.call('create_ticket', { customerId: 'cus_002', subject, body: 'Smoke is coming out of the tray.' }))
    const row = await one<TicketRow>('SELECT id, customer_id, subject, body, priority, status, created_by, created_at FROM tickets WHERE id = ?1', ticket.id)
    expect(row).toEqual(ticket)
    expect(row).toMatchObject({ customer_id: 'cus_002', subject, body: 'Smoke is coming out of the tray.', priority: 'normal', status: 'open', created_by: s.sub })
    expect(row.id).toMatch(/^tkt_[0-9a-f]{16}$/)
    expect(await count('SELECT count(*) AS n FROM tickets WHERE subject = ?1', subject)).toBe(1)
  })
})

describe('create_ticket', () => {
  it('stores the requested priority', async () => {
    const subject = `urgent ${crypto.randomUUID()}`
    const s = await session()
    const { ticket } = data<{ ticket: TicketRow }>(await s.call('create_ticket', { customerId: 'cus_003', subject, body: 'b', priority: 'urgent' }))
    expect(await one<{ priority: string }>('SELECT priority FROM tickets WHERE id = ?1', ticket.id)).toEqual({ priority: 'urgent' })
  })

  it('sets created_by from the token, not from the arguments', async () => {
    const subject = `spoof ${crypto.randomUUID()}`
    const s = await session()
    const result = await s.call('create_ticket', { customerId: 'cus_003', subject, body: 'b', created_by: 'someone-else' })
    expectToolError(result, 'created_by')
    expect(await count('SELECT count(*) AS n FROM tickets WHERE subject = ?1', subject)).toBe(0)
  })

  it('refuses an unknown customer and creates no ticket', async () => {
    const subject = `ghost ${crypto.randomUUID()}`
    const s = await session()
    const result = await s.call('create_ticket', { customerId: 'cus_999', subject, body: 'b' })
    expect(result.isError).toBe(true)
    expect(textOf(result)).toBe('customer cus_999 not found')
    expect(await count('SELECT count(*) AS n FROM tickets WHERE subject = ?1', subject)).toBe(0)
    expect(await count("SELECT count(*) AS n FROM tickets WHERE customer_id = 'cus_999'")).toBe(0)
  })

  it.each([
    ['an empty subject', { subject: '' }, 'subject'],
    ['a blank subject', { subject: '   ' }, 'subject'],
    ['a 201-character subject', { subject: 's'.repeat(201) }, 'subject'],
    ['an empty body', { body: '' }, 'body'],
    ['a 5001-character body', { body: 'b'.repeat(5001) }, 'body'],
    ['an unknown priority', { priority: 'critical' }, 'priority'],
    ['a malformed customer id', { customerId: 'cus_001; DROP TABLE tickets' }, 'customerId'],
    ['a missing body', { body: undefined }, 'body'],
  ] as [string, Record<string, unknown>, string][])('refuses %s, naming the field, and creates no ticket', async (_what, overrides, field) => {
    const marker = `marker-${crypto.randomUUID()}`
    const args: Record<string, unknown> = { customerId: 'cus_004', subject: `subject ${marker}`, body: `body ${marker}`, ...overrides }
    for (const [k, v] of Object.entries(args)) if (v === undefined) delete args[k]
    // the file's tests run one at a time on the file's own storage: the tickets table must be exactly as it was
    const ticketIds = async () => (await DB().prepare('SELECT id FROM tickets ORDER BY id').raw()).map(([id]) => String(id))
    const before = await ticketIds()
    const s = await session()
    expectToolError(await s.call('create_ticket', args), field)
    expect(await count('SELECT count(*) AS n FROM tickets WHERE instr(subject, ?1) > 0 OR instr(body, ?1) > 0', marker)).toBe(0)
    expect(await count("SELECT count(*) AS n FROM tickets WHERE created_by = ?1", s.sub)).toBe(0)
    expect(await ticketIds()).toEqual(before)
  })

  it('accepts a 200-character subject and a 5000-character body', async () => {
    const subject = `${crypto.randomUUID()}`.padEnd(200, 's')
    const s = await session()
    const { ticket } = data<{ ticket: TicketRow }>(await s.call('create_ticket', { customerId: 'cus_004', subject, body: 'b'.repeat(5000) }))
    expect(await one<{ n: number }>('SELECT length(subject) AS n FROM tickets WHERE id = ?1', ticket.id)).toEqual({ n: 200 })
  })
})

// ---------------------------------------------------------------------------

describe('search', () => {
  it('ranks the product whose name is searched first', async () => {
    const product = await one<{ id: string; name: string }>("SELECT id, name FROM products WHERE id = 'prd_025'")
    const s = await session()
    const { results } = data<{ results: SearchHit[] }>(await s.call('search', { query: product.name }))
    expect(results[0]).toMatchObject({ kind: 'product', id: 'prd_025', title: product.name })
  })

  it('finds an order by its id', async () => {
    const s = await session()
    const { results } = data<{ results: SearchHit[] }>(await s.call('search', { query: 'ord_0042' }))
    expect(results[0]).toMatchObject({ kind: 'order', id: 'ord_0042' })
  })

  it('finds a customer by name', async () => {
    const customer = await one<{ id: string; name: string }>("SELECT id, name FROM customers WHERE id = 'cus_010'")
    const s = await session()
    const { results } = data<{ results: SearchHit[] }>(await s.call('search', { query: customer.name, limit: 50 }))
    expect(results.filter((r) => r.kind === 'customer').map((r) => r.id)).toContain('cus_010')
  })

  it('returns results across kinds, best score first', async () => {
    // "dock" is a product noun and part of an order note ("deliver to loading dock").
    const s = await session()
    const { results } = data<{ results: SearchHit[] }>(await s.call('search', { query: 'dock', limit: 50 }))
    const kinds = new Set(results.map((r) => r.kind))
    expect(kinds.has('product')).toBe(true)
    expect(kinds.has('order')).toBe(true)
    const scores = results.map((r) => r.score)
    expect(scores).toEqual([...scores].sort((a, b) => b - a))
  })

  it('never exposes e-mail addresses or phone numbers of customers', async () => {
    const customer = await one<{ email: string; phone: string; name: string }>("SELECT email, phone, name FROM customers WHERE id = 'cus_010'")
    const s = await session()
    for (const query of [customer.name, customer.email.split('@')[0]!, customer.phone.slice(1)]) {
      const result = await s.call('search', { query, limit: 50 })
      expect(JSON.stringify(result)).not.toContain(customer.email)
      expect(JSON.stringify(result)).not.toContain(customer.phone)
    }
  })

  it('respects the limit, and defaults to 10', async () => {
    const s = await session()
    expect(data<{ results: SearchHit[] }>(await s.call('search', { query: 'o', limit: 3 })).results).toHaveLength(3)
    expect(data<{ results: SearchHit[] }>(await s.call('search', { query: 'o' })).results).toHaveLength(10)
  })

  it('FTS5 query syntax in the input is never an internal error', async () => {
    const queries = [
      'NEAR(',
      'NEAR(a b, 2)',
      'a OR b',
      'keyboard OR mouse',
      'NOT keyboard',
      'a AND',
      'title:x',
      'body:keyboard',
      '{title body}: dock',
      '*',
      '"',
      '"unterminated',
      '(',
      ')',
      '^dock',
      '-dock',
      'dock*',
      "'; DROP TABLE orders; --",
      'search_index MATCH 1',
      '\u0000',
      'ｋｅｙｂｏａｒｄ',
    ]
    const s = await session()
    for (const query of queries) {
      const result = await s.call('search', { query })
      const text = textOf(result)
      expect(text, `query ${JSON.stringify(query)}`).not.toMatch(/internal error/i)
      if (result.isError) expect(text).toMatch(/query/)
      else expect(Array.isArray((result.structuredContent as { results: unknown }).results)).toBe(true)
    }
    expect(await count('SELECT count(*) AS n FROM orders')).toBeGreaterThanOrEqual(300)
  })

  it('refuses a query with no searchable words, saying so', async () => {
    const s = await session()
    expect(textOf(await s.call('search', { query: '*"()' }))).toBe('query has no searchable words (letters or digits)')
  })

  it.each([
    ['an empty query', { query: '' }, 'query'],
    ['a 201-character query', { query: 'q'.repeat(201) }, 'query'],
    ['limit 0', { query: 'dock', limit: 0 }, 'limit'],
    ['limit 51', { query: 'dock', limit: 51 }, 'limit'],
    ['an extra unknown argument', { query: 'dock', kind: 'order' }, 'kind'],
  ] as [string, Record<string, unknown>, string][])('refuses %s, naming the field', async (_what, args, field) => {
    const s = await session()
    expectToolError(await s.call('search', args), field)
  })
})

// ---------------------------------------------------------------------------

const READERS = ['get_customer', 'list_orders', 'search_products', 'search']
const WRITERS = ['update_order', 'create_ticket']

interface ListedTool {
  name: string
  title?: string
  description?: string
  inputSchema: { type: string; properties?: Record<string, { description?: string }> }
  outputSchema?: { type: string; properties?: Record<string, unknown> }
  annotations?: { readOnlyHint?: boolean; destructiveHint?: boolean; title?: string }
}

describe.each(['modern', 'legacy'] as const)('tools/list declares every tool in full (%s client)', (era) => {
  it('each tool has a title, a description, a described input schema, an output schema and annotations', async () => {
    const s = await session(era)
    const { tools } = (await s.client.listTools()) as { tools: ListedTool[] }
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining([...READERS, ...WRITERS]))
    for (const tool of tools) {
      expect(tool.title, tool.name).toBeTruthy()
      expect(tool.description?.length ?? 0, tool.name).toBeGreaterThan(10)
      expect(tool.inputSchema.type).toBe('object')
      const properties = Object.entries(tool.inputSchema.properties ?? {})
      expect(properties.length, tool.name).toBeGreaterThan(0)
      for (const [name, schema] of properties) expect(schema.description, `${tool.name}.${name}`).toBeTruthy()
      expect(tool.outputSchema?.type, tool.name).toBe('object')
      expect(Object.keys(tool.outputSchema?.properties ?? {}).length, tool.name).toBeGreaterThan(0)
      expect(typeof tool.annotations?.readOnlyHint, tool.name).toBe('boolean')
    }
  })

  it('marks the readers read-only and update_order and create_ticket not', async () => {
    const s = await session(era)
    const { tools } = (await s.client.listTools()) as { tools: ListedTool[] }
    const hint = Object.fromEntries(tools.map((t) => [t.name, t.annotations?.readOnlyHint]))
    for (const name of READERS) expect(hint[name], name).toBe(true)
    for (const name of WRITERS) expect(hint[name], name).toBe(false)
    expect(tools.find((t) => t.name === 'update_order')?.annotations?.destructiveHint).toBe(true)
  })

  it('declares the documented arguments of each tool', async () => {
    const s = await session(era)
    const { tools } = (await s.client.listTools()) as { tools: ListedTool[] }
    const props = (name: string) => Object.keys(tools.find((t) => t.name === name)?.inputSchema.properties ?? {}).sort()
    expect(props('get_customer')).toEqual(['customerId'])
    expect(props('list_orders')).toEqual(['cursor', 'customerId', 'limit', 'status'])
    expect(props('search_products')).toEqual(['limit', 'query'])
    expect(props('update_order')).toEqual(['note', 'orderId', 'status'])
    expect(props('create_ticket')).toEqual(['body', 'customerId', 'priority', 'subject'])
    expect(props('search')).toEqual(['limit', 'query'])
  })
})

// ---------------------------------------------------------------------------

describe('error boundary', () => {
  it('no tool result, success or failure, carries D1/SQLite errors, stack frames or the token', async () => {
    const final = await orderIn('delivered')
    const s = await session()
    const calls: [string, Record<string, unknown>][] = [
      ['get_customer', { customerId: "cus_001'; SELECT * FROM sqlite_master; --" }],
      ['get_customer', { customerId: 'cus_0000000000000000000000000000000000000000000000000000000000001' }],
      ['get_customer', { customerId: null }],
      ['list_orders', { cursor: btoa('{"c":"\\u0000","i":"\'"}') }],
      ['list_orders', { status: "pending' OR 1=1 --" }],
      ['list_orders', { limit: 1e308 }],
      ['search_products', { query: "'))); DROP TABLE products; --" }],
      ['search_products', { query: '\u0000\uffff' }],
      ['update_order', { orderId: final.id, status: 'paid', note: "'); DELETE FROM orders; --" }],
      ['update_order', { orderId: 'ord_' + '9'.repeat(60), status: 'paid' }],
      ['create_ticket', { customerId: 'cus_001', subject: 'x', body: 'y', priority: ['high'] }],
      ['search', { query: 'NEAR("a" "b", -1)' }],
      ['search', { query: 'x'.repeat(200) }],
      ['search', { query: Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ') }],
    ]
    for (const [name, args] of calls) {
      const result = await s.call(name, args) // s.call checks every result for leaks
      expect(textOf(result), `${name} ${JSON.stringify(args)}`).not.toMatch(/internal error/i)
    }
    expect(await count('SELECT count(*) AS n FROM products')).toBeGreaterThanOrEqual(120)
    expect(await count('SELECT count(*) AS n FROM orders')).toBeGreaterThanOrEqual(300)
  })

  it('the token never reaches a tool result, even in an error about the caller', async () => {
    const s = await session()
    const results = [
      await s.call('create_ticket', { customerId: 'cus_999', subject: s.token.slice(0, 150), body: 'b' }),
      await s.call('get_customer', { customerId: s.token }),
    ]
    for (const result of results) {
      expect(result.isError).toBe(true)
      expect(JSON.stringify(result)).not.toContain(s.token.split('.')[2]!)
    }
  })
})
