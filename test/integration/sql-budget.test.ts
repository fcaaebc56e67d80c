// The work budget of execute_query (src/sql/plan-budget.ts) against workerd's
// D1: SQLite's real plans, the demo tables' real sizes and statistics.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import worker from '../../src/index.ts'
import { afterAll, describe, expect, it } from 'vitest'
import { executeReadOnly, type ExecuteOptions } from '../../src/sql/execute.ts'
import { guardQuery } from '../../src/sql/guard.ts'
import { forgetStats, pricePlan, readTableStats, type PlanRow } from '../../src/sql/plan-budget.ts'
import { POLICY } from '../../src/policy/policy.ts'
import { BUSINESS_TABLES, LEGIT } from '../support/sql-cases.ts'
import { testEnv } from '../support/test-env.ts'
import { connectClient } from '../support/worker.ts'

const opts: ExecuteOptions = { allowedTables: BUSINESS_TABLES, maxRows: 500, maxBytes: 256 * 1024, maxVisitedRows: POLICY.maxQueryVisitedRows }

type TextBlock = { type: 'text'; text: string }

/** The price the budget puts on `query`, with the guard's facts about it. */
async function priceOf(query: string): Promise<number> {
  const guard = guardQuery(query, opts)
  if (!guard.ok) throw new Error(`guard refused ${query}: ${guard.message}`)
  const [plan, stats] = await Promise.all([env.DB.prepare(`EXPLAIN QUERY PLAN ${guard.sql}`).all<PlanRow>(), readTableStats(env.DB, guard.tables)])
  const price = pricePlan(plan.results, stats, guard)
  if (!price.ok) throw new Error(price.message)
  return price.rows
}

const ATTACKS = [
  ['the four-table cross join of the review', 'SELECT count(*) FROM orders a, orders b, orders c, orders d WHERE a.id <> b.id'],
  ['a recursive CTE of 10^4 rows times the orders twice (10^9)', 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10000) SELECT count(*) FROM c, orders a, orders b'],
  ['a scan nested under a scan (a correlated subquery over a product)', 'SELECT id FROM orders a WHERE (SELECT count(*) FROM orders b, customers c, products p WHERE b.total_cents + c.rowid + p.rowid > a.total_cents) > 0'],
  ['three nested scans of orders without a join condition', 'SELECT count(*) FROM orders a JOIN orders b JOIN orders c'],
  ['a self-join on an unindexed column', 'SELECT count(*) FROM orders a JOIN orders b ON a.note = b.note JOIN orders c ON c.note = b.note'],
] as const

describe('work budget: refuses before D1 runs anything', () => {
  it.each(ATTACKS)('refuses %s with a message a model can act on', async (_, query) => {
    const result = await executeReadOnly(env.DB, query, opts)
    expect(result).toMatchObject({ ok: false, kind: 'refused', code: 'over_budget' })
    if (result.ok || result.kind !== 'refused') return
    expect(result.message).toMatch(/^this query would visit about 10[⁰¹²³⁴⁵⁶⁷⁸⁹]+ rows \(.+\); the limit is 10⁷ rows: add a join condition or a WHERE on an indexed column$/)
  })

  it('refuses a pure 10^12 CTE product in the guard already, before D1 is asked, saying how many rows and what to do', async () => {
    const query = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10000) SELECT count(*) FROM c a, c b, c d'
    const result = await executeReadOnly(env.DB, query, opts)
    expect(result).toMatchObject({ ok: false, code: 'unbounded_recursion' })
    if (result.ok || result.kind !== 'refused') return
    expect(result.message).toMatch(/^this query would visit about 10⁸ rows or more: .*read a recursive CTE only once, or lower its LIMIT$/)
  })

  it('prices the cross join of the review at the product of the table sizes', async () => {
    const orders = Number((await env.DB.prepare('SELECT count(*) AS n FROM orders').first<{ n: number }>())?.n)
    expect(await priceOf('SELECT count(*) FROM orders a, orders b, orders c, orders d')).toBeGreaterThanOrEqual(orders ** 4)
  })

  it('refuses through the tool as a tool error, with nothing else in the result', async () => {
    const client = await connectClient({ role: 'admin', sub: 'budget-tool' })
    const result = await client.callTool({ name: 'execute_query', arguments: { query: ATTACKS[0][1] } })
    await client.close()
    expect(result.isError).toBe(true)
    expect((result.content as TextBlock[])[0]!.text).toMatch(/^query refused: this query would visit about 10¹⁰ rows/)
    expect(result.structuredContent).toBeUndefined()
  }, 30_000)
})

describe('work budget: legitimate queries', () => {
  it.each(LEGIT.map((c) => [c.name, c.sql] as const))('runs %s, priced at no less than the rows D1 reads', async (_, query) => {
    const guard = guardQuery(query, opts)
    expect(guard.ok).toBe(true)
    if (!guard.ok) return
    const price = await priceOf(query)
    expect(price).toBeLessThanOrEqual(POLICY.maxQueryVisitedRows)
    // D1's own count of the rows the statement read: the price is an upper bound of it
    const run = await env.DB.prepare(guard.sql).all()
    expect(price).toBeGreaterThanOrEqual(run.meta.rows_read)
  })
})

describe('work budget: statistics', () => {
  afterAll(async () => {
    await env.DB.prepare('PRAGMA optimize=0x10002').run()
    forgetStats()
  })

  it('prices a join through an index by its rows per key once the tables are analyzed', async () => {
    forgetStats()
    const orders = Number((await env.DB.prepare('SELECT count(*) AS n FROM customers').first<{ n: number }>())?.n)
    const price = await priceOf('SELECT c.id, o.id FROM customers c JOIN orders o ON o.customer_id = c.id')
    expect(price).toBeLessThan(orders * 300)
  })

  it('prices a join through an index as a scan when there are no statistics: never low', async () => {
    await env.DB.prepare('DELETE FROM sqlite_stat1').run()
    forgetStats()
    const sizes = await env.DB.prepare('SELECT (SELECT count(*) FROM customers) AS c, (SELECT max(rowid) FROM orders) AS o').first<{ c: number; o: number }>()
    const price = await priceOf('SELECT c.id, o.id FROM customers c JOIN orders o ON o.customer_id = c.id')
    expect(price).toBeGreaterThanOrEqual(sizes!.c * sizes!.o)
  })

  it('gets its statistics back from the cron', async () => {
    // a database that was never analyzed: no rows, and SQLite reloads its (empty) statistics
    await env.DB.prepare('DELETE FROM sqlite_stat1').run()
    await env.DB.prepare('ANALYZE sqlite_schema').run()
    const ctx = createExecutionContext()
    await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: '17 3 * * *' }), testEnv(env), ctx)
    await waitOnExecutionContext(ctx)
    const stat = await env.DB.prepare("SELECT stat FROM sqlite_stat1 WHERE idx = 'orders_by_customer'").first<{ stat: string }>()
    expect(stat?.stat).toMatch(/^\d+ \d+/)
  })

  it('sees rows added since the last call (sizes are read at every call)', async () => {
    const before = await priceOf('SELECT * FROM tickets')
    const id = `tkt_budget_${crypto.randomUUID().slice(0, 8)}`
    await env.DB.prepare("INSERT INTO tickets (id, customer_id, subject, body, created_by, created_at) VALUES (?, 'cus_001', 's', 'b', 'test', '2026-01-01')").bind(id).run()
    expect(await priceOf('SELECT * FROM tickets')).toBe(before + 1)
    await env.DB.prepare('DELETE FROM tickets WHERE id = ?').bind(id).run()
  })
})
