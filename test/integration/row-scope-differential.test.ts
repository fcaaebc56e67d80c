// Row scope, differentially (src/policy/row-scope.ts, the guard's rewrite in
// src/sql/guard.ts): for random execute_query statements, the rows returned
// under customer A's scope on the full database are a sub-multiset of the rows
// the same statement returns, unscoped, on a database that holds only A's rows
// (TENANT_DB: A's customer row, orders and tickets, and every product).
//
// The statements come from templates that read the scoped tables every way
// the guard's rewrite has to catch: FROM with and without alias, main.,
// quoted and upper-case names, joins (inner, LEFT), IN (SELECT ...), EXISTS
// and NOT EXISTS, scalar subqueries, CTEs (including one named like a
// table), UNION / UNION ALL / INTERSECT / EXCEPT, aggregates with GROUP BY,
// and literals naming other customers' ids. Deterministic: a fixed seed and
// 1000 runs. Both sides run through executeReadOnly, so the guard, EXPLAIN
// gate and work budget apply to the rewritten statement as in production.
import { env } from 'cloudflare:workers'
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { parseRowScope, rowFilterFor, type RowFilter } from '../../src/policy/row-scope.ts'
import { executeReadOnly, type ExecuteOptions } from '../../src/sql/execute.ts'
import { BUSINESS_TABLES } from '../support/sql-cases.ts'
import { applyMigrations, testEnv } from '../support/test-env.ts'

const SEED = 20261207
const NUM_RUNS = 1000
/** Bounds a hang, not a speed check. */
const TIMEOUT_MS = 240_000

const E = testEnv(env)
const OPTS: ExecuteOptions = { allowedTables: BUSINESS_TABLES, maxRows: 500, maxBytes: 1 << 20, maxVisitedRows: 10_000_000 }
const SCOPE = parseRowScope('customers.id=claim.customer,orders.customer_id=claim.customer,tickets.customer_id=claim.customer', undefined, new Set(['admin']))

let A: string
let others: string[]
let filter: RowFilter

/** Copies `table`'s rows matching `where` from DB to TENANT_DB. */
async function copy(table: string, where: string, ...params: string[]): Promise<number> {
  const { results } = await E.DB.prepare(`SELECT * FROM ${table} WHERE ${where}`).bind(...params).all<Record<string, string | number | null>>()
  if (results.length === 0) return 0
  const columns = Object.keys(results[0]!)
  const insert = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((_, i) => `?${i + 1}`).join(', ')})`
  await E.TENANT_DB.batch(results.map((row) => E.TENANT_DB.prepare(insert).bind(...columns.map((c) => row[c] ?? null))))
  return results.length
}

beforeAll(async () => {
  const top = (await E.DB.prepare('SELECT customer_id AS id FROM orders GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 4').all<{ id: string }>()).results.map((r) => r.id)
  A = top[0]!
  others = top.slice(1)
  // tickets for A and for others, so the tickets table has rows on both sides of the scope
  const now = new Date().toISOString()
  await E.DB.batch(
    [A, ...others, A].map((customer, i) =>
      E.DB.prepare("INSERT OR IGNORE INTO tickets (id, customer_id, subject, body, priority, status, created_by, created_at) VALUES (?1, ?2, ?3, 'body', 'normal', 'open', 'diff', ?4)")
        .bind(`tkt_diff_${i}`, customer, `ticket ${i}`, now),
    ),
  )
  await applyMigrations(E.TENANT_DB)
  expect(await copy('products', '1')).toBeGreaterThan(0)
  expect(await copy('customers', 'id = ?1', A)).toBe(1)
  expect(await copy('orders', 'customer_id = ?1', A)).toBeGreaterThan(1)
  expect(await copy('tickets', 'customer_id = ?1', A)).toBe(2)
  await E.TENANT_DB.prepare('PRAGMA optimize=0x10002').run()
  filter = rowFilterFor(SCOPE, { sub: 'agent-a', roles: [], claims: new Map([['customer', A]]) })
})

const STATUSES = ['pending', 'paid', 'shipped', 'delivered', 'cancelled']

function queries(): fc.Arbitrary<string> {
  const customerId = fc.constantFrom(() => A, () => others[0]!, () => others[1]!, () => 'cus_001').map((f) => f())
  const status = fc.constantFrom(...STATUSES)
  /** How a table is named: plain, main., quoted, upper case. */
  const named = (t: string) => fc.constantFrom(t, `main.${t}`, `"${t}"`, t.toUpperCase(), `main."${t}"`)
  const table = fc.constantFrom(...BUSINESS_TABLES)
  const idOf = (t: string) => (t === 'orders' || t === 'tickets' ? 'customer_id' : 'id')
  const where = fc.oneof(
    fc.constant(''),
    status.map((s) => ` WHERE status = '${s}'`),
    customerId.map((c) => ` WHERE customer_id = '${c}'`),
    customerId.map((c) => ` WHERE customer_id <> '${c}'`),
  )

  return fc.oneof(
    // a plain read, with or without alias
    fc.tuple(table, fc.boolean()).chain(([t, alias]) => named(t).map((n) => `SELECT * FROM ${n}${alias ? ' AS x' : ''} ORDER BY 1`)),
    fc.tuple(named('orders'), where).map(([n, w]) => `SELECT id, status, total_cents FROM ${n}${w}`),
    // joins
    fc.tuple(named('orders'), named('customers'), fc.constantFrom('JOIN', 'LEFT JOIN', 'CROSS JOIN'), where).map(
      ([o, c, join, w]) => `SELECT o.id AS oid, c.id AS cid FROM ${o} o ${join} ${c} c${join === 'CROSS JOIN' ? '' : ' ON o.customer_id = c.id'}${w.replace('WHERE ', 'WHERE o.')}`,
    ),
    fc.tuple(named('products'), named('orders')).map(([p, o]) => `SELECT p.id, count(o.id) AS n FROM ${p} p LEFT JOIN ${o} o ON o.product_id = p.id GROUP BY p.id HAVING n > 0`),
    fc.tuple(named('customers'), named('orders')).map(([c, o]) => `SELECT c.id, count(o.id) AS n, sum(o.total_cents) AS s FROM ${c} c LEFT JOIN ${o} o ON o.customer_id = c.id GROUP BY c.id`),
    // subqueries
    fc.tuple(named('customers'), named('orders'), status).map(([c, o, s]) => `SELECT id FROM ${c} WHERE id IN (SELECT customer_id FROM ${o} WHERE status = '${s}')`),
    fc.tuple(named('customers'), named('tickets')).map(([c, t]) => `SELECT id FROM ${c} c WHERE EXISTS (SELECT 1 FROM ${t} t WHERE t.customer_id = c.id)`),
    fc.tuple(named('products'), named('orders')).map(([p, o]) => `SELECT id FROM ${p} p WHERE NOT EXISTS (SELECT 1 FROM ${o} o WHERE o.product_id = p.id) ORDER BY id LIMIT 20`),
    fc.tuple(named('orders'), named('tickets'), named('customers')).map(([o, t, c]) => `SELECT (SELECT count(*) FROM ${o}) AS orders, (SELECT count(*) FROM ${t}) AS tickets, (SELECT max(id) FROM ${c}) AS last`),
    // CTEs
    // a CTE named like the table it reads (through main., or it would be recursion) hides nothing
    fc.tuple(table, fc.boolean()).chain(([t, shadow]) => named(t).map((n) => `WITH ${shadow ? t : 'x'} AS (SELECT * FROM ${shadow ? `main.${t}` : n}) SELECT count(*) AS n FROM ${shadow ? t : 'x'}`)),
    fc.tuple(named('orders'), status).map(([o, s]) => `WITH mine AS (SELECT customer_id, total_cents FROM ${o} WHERE status <> '${s}'), totals AS (SELECT customer_id, sum(total_cents) AS t FROM mine GROUP BY customer_id) SELECT * FROM totals`),
    // compounds
    fc.tuple(table, table, fc.constantFrom('UNION', 'UNION ALL', 'INTERSECT', 'EXCEPT')).chain(([a, b, op]) =>
      fc.tuple(named(a), named(b)).map(([na, nb]) => `SELECT ${idOf(a)} AS k FROM ${na} ${op} SELECT ${idOf(b)} FROM ${nb}`),
    ),
    // aggregates
    fc.tuple(named('orders'), fc.constantFrom('status', 'product_id', 'customer_id')).map(([o, g]) => `SELECT ${g}, count(*) AS n, sum(quantity) AS q FROM ${o} GROUP BY ${g}`),
    fc.tuple(named('tickets'), customerId).map(([t, c]) => `SELECT count(*) AS n FROM ${t} WHERE customer_id = '${c}' OR customer_id IN (SELECT id FROM customers)`),
  )
}

type Rows = Record<string, unknown>[]

/** `inner` ⊆ `outer` as multisets of rows (JSON text, keys in column order). */
function subMultiset(inner: Rows, outer: Rows): boolean {
  const counts = new Map<string, number>()
  for (const row of outer) counts.set(JSON.stringify(row), (counts.get(JSON.stringify(row)) ?? 0) + 1)
  for (const row of inner) {
    const key = JSON.stringify(row)
    const left = counts.get(key) ?? 0
    if (left === 0) return false
    counts.set(key, left - 1)
  }
  return true
}

describe('row scope, differentially', () => {
  it(
    `returns under the scope only rows the same query returns on a database holding only that customer's rows (${NUM_RUNS} runs)`,
    async () => {
      const stats = { compared: 0, equal: 0, nonEmpty: 0, refused: 0, codes: {} as Record<string, number> }
      await fc.assert(
        fc.asyncProperty(queries(), async (sql) => {
          const scoped = await executeReadOnly(E.DB, sql, { ...OPTS, rowFilter: filter })
          const alone = await executeReadOnly(E.TENANT_DB, sql, OPTS)
          if (!scoped.ok || !alone.ok) {
            // a query refused on one side only is allowed (never rows the scope hides), but both must be refusals the caller can read
            stats.refused++
            const code = `${scoped.ok ? 'ok' : scoped.kind === 'refused' ? scoped.code : scoped.kind}/${alone.ok ? 'ok' : alone.kind === 'refused' ? alone.code : alone.kind}`
            stats.codes[code] = (stats.codes[code] ?? 0) + 1
            if (!scoped.ok) expect(scoped.kind).toBe('refused')
            return true
          }
          stats.compared++
          if (scoped.rows.length > 0) stats.nonEmpty++
          if (scoped.rows.length === alone.rows.length && subMultiset(alone.rows, scoped.rows)) stats.equal++
          expect(scoped.columns).toEqual(alone.columns)
          return subMultiset(scoped.rows, alone.rows)
        }),
        { seed: SEED, numRuns: NUM_RUNS },
      )
      console.log(`row-scope differential: ${JSON.stringify(stats)}`)
      // the runs compared real results: most statements ran on both sides and returned rows
      expect(stats.compared).toBeGreaterThan(NUM_RUNS * 0.9)
      expect(stats.nonEmpty).toBeGreaterThan(NUM_RUNS * 0.5)
    },
    TIMEOUT_MS,
  )

  it('finds a leak when the rewrite is missing: the same queries unscoped on the full database break the property', async () => {
    let broken = 0
    for (const sql of ['SELECT id FROM orders', 'SELECT count(*) AS n FROM customers', 'SELECT customer_id AS k FROM orders UNION SELECT id FROM customers']) {
      const full = await executeReadOnly(E.DB, sql, OPTS)
      const alone = await executeReadOnly(E.TENANT_DB, sql, OPTS)
      if (full.ok && alone.ok && !subMultiset(full.rows, alone.rows)) broken++
    }
    expect(broken).toBe(3)
  })
})
