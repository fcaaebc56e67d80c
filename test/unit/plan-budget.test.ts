// The work budget's pricing (src/sql/plan-budget.ts) over plans as SQLite
// prints them (lines copied from EXPLAIN QUERY PLAN in workerd's D1). The
// same queries against a real D1 are in test/integration/sql-budget.test.ts.
import { describe, expect, it } from 'vitest'
import { overBudgetMessage, powerOfTen, pricePlan, type PlanRow, type TableStats } from '../../src/sql/plan-budget.ts'

const stats: TableStats = {
  rows: new Map([
    ['orders', 1_000_000],
    ['customers', 10_000],
    ['products', 500],
  ]),
  indexes: new Map([
    ['sqlite_autoindex_orders_1', { table: 'orders', perKey: [1], analyzedRows: 1_000_000 }],
    ['sqlite_autoindex_customers_1', { table: 'customers', perKey: [1], analyzedRows: 10_000 }],
    ['orders_by_customer', { table: 'orders', perKey: [100, 1, 1], analyzedRows: 500_000 }],
    ['orders_by_status', { table: 'orders', perKey: undefined, analyzedRows: undefined }],
  ]),
}

/** Plan rows from "id parent detail" lines. */
function plan(...lines: string[]): PlanRow[] {
  return lines.map((line) => {
    const [id, parent, ...detail] = line.split(' ')
    return { id: Number(id), parent: Number(parent), detail: detail.join(' ') }
  })
}

const price = (rows: PlanRow[], recursive: [string, number][] = [], aliases: [string, string[]][] = [], inListProduct = 1) => {
  const result = pricePlan(rows, stats, { recursiveRows: new Map(recursive), aliases: new Map(aliases.map(([a, t]) => [a, new Set(t)])), inListProduct })
  if (!result.ok) throw new Error(result.message)
  return result.rows
}

describe('work budget: pricing a plan', () => {
  it('prices a product of scans as the product of the table sizes', () => {
    const rows = price(plan('6 0 SCAN a USING COVERING INDEX sqlite_autoindex_orders_1', '8 0 SCAN b USING COVERING INDEX sqlite_autoindex_orders_1', '13 0 SCAN c USING COVERING INDEX sqlite_autoindex_customers_1'))
    expect(rows).toBe(1e6 + 1e12 + 1e16)
  })

  it('prices a join on a unique key as one lookup per outer row', () => {
    expect(price(plan('5 0 SCAN o', '7 0 SEARCH c USING COVERING INDEX sqlite_autoindex_customers_1 (id=?) LEFT-JOIN'))).toBe(2_000_000)
  })

  it('prices an index search by its rows per key, scaled by the growth since ANALYZE', () => {
    // 100 rows per customer_id when analyzed at 500 000 rows; the table has doubled
    expect(price(plan('2 0 SCAN customers', '3 0 SEARCH o USING INDEX orders_by_customer (customer_id=?)'))).toBe(10_000 + 10_000 * 200)
  })

  it('prices an index search without statistics as a scan, never lower', () => {
    expect(price(plan('2 0 SCAN customers', '3 0 SEARCH o USING INDEX orders_by_status (status=?)'))).toBe(10_000 + 10_000 * 1e6)
  })

  it('prices a range on an index as a scan of the table', () => {
    expect(price(plan('3 0 SEARCH o USING INDEX orders_by_customer (customer_id>?)'))).toBe(1e6)
  })

  it('prices a rowid lookup as one row and a rowid range as the table', () => {
    expect(price(plan('3 0 SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)'))).toBe(1)
    expect(price(plan('3 0 SEARCH orders USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)'))).toBe(1e6)
  })

  it('prices an alias as the largest of what it stands for, so `FROM orders AS products` cannot pass for the small table', () => {
    expect(price(plan('2 0 SCAN products'), [], [['products', ['orders']]])).toBe(1e6)
    expect(price(plan('2 0 SCAN p'), [], [['p', ['products', 'customers']]])).toBe(10_000)
    expect(price(plan('2 0 SCAN products'))).toBe(500)
  })

  it('prices a name it cannot identify as the largest table or subquery', () => {
    expect(price(plan('2 0 SCAN x'))).toBe(1e6)
  })

  it('prices a correlated subquery once per row of the loops before it', () => {
    const rows = price(plan('2 0 SCAN orders', '6 0 CORRELATED SCALAR SUBQUERY 1', '12 6 SCAN o2 USING COVERING INDEX sqlite_autoindex_orders_1'))
    expect(rows).toBe(1e6 + 1e6 * 1e6)
  })

  it('prices an uncorrelated subquery once, and repeats the equality searches it feeds with IN', () => {
    const rows = price(plan('3 0 SEARCH o USING INDEX orders_by_customer (customer_id=?)', '7 0 LIST SUBQUERY 1', '10 7 SCAN customers', '18 7 CREATE BLOOM FILTER'))
    // 10 000 values × 200 rows a key, but at most the whole table (1 000 000)
    expect(rows).toBe(10_000 + 1e6)
  })

  it('repeats equality searches once per value of the literal IN lists, so a list cannot hide a product', () => {
    // customer_id IN (30 values): 30 lookups of 200 rows each, not one
    expect(price(plan('3 0 SEARCH o USING INDEX orders_by_customer (customer_id=?)'), [], [], 30)).toBe(6000)
    // two IN lists feeding one scope multiply, up to the whole table per search
    const rows = price(plan('3 0 SEARCH o USING INDEX orders_by_customer (customer_id=?)', '7 0 LIST SUBQUERY 1', '10 7 SCAN customers', '12 0 LIST SUBQUERY 2', '14 12 SCAN products'))
    expect(rows).toBe(10_000 + 500 + 1e6)
    expect(price(plan('3 0 SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)'), [], [], 5)).toBe(5)
  })

  it('fails closed on a recursive CTE the guard did not bound', () => {
    const result = pricePlan(plan('3 0 MATERIALIZE c', '8 3 SETUP', '9 8 SCAN CONSTANT ROW', '23 3 RECURSIVE STEP', '24 23 SCAN c'), stats, { recursiveRows: new Map(), aliases: new Map(), inListProduct: 1 })
    expect(result).toMatchObject({ ok: false, reason: 'unreadable' })
  })

  it('prices a co-routine once and its scan by its output', () => {
    const rows = price(plan('2 0 CO-ROUTINE t', '8 2 SCAN orders USING COVERING INDEX orders_by_customer', '37 0 SCAN t', '40 0 SEARCH c USING COVERING INDEX sqlite_autoindex_customers_1 (id=?)'))
    expect(rows).toBe(1e6 + 1e6 + 1e6)
  })

  it('prices a recursive CTE at its LIMIT, and a product of its reads as a product', () => {
    const rows = price(
      plan('3 0 MATERIALIZE c', '8 3 SETUP', '9 8 SCAN CONSTANT ROW', '23 3 RECURSIVE STEP', '24 23 SCAN c', '39 0 SCAN a', '41 0 SCAN b', '43 0 SCAN orders USING COVERING INDEX sqlite_autoindex_orders_1'),
      [['c', 10_000]],
    )
    // the CTE: 1 + 10 000 steps of one queued row; then a and b (unknown
    // names: the largest, orders) and orders
    expect(rows).toBe(1 + 10_000 + 1e6 + 1e12 + 1e18)
  })

  it('adds up compound members and the branches of an OR over indexes', () => {
    expect(price(plan('1 0 COMPOUND QUERY', '2 1 LEFT-MOST SUBQUERY', '5 2 SCAN orders USING COVERING INDEX sqlite_autoindex_orders_1', '11 1 UNION USING TEMP B-TREE', '13 11 SCAN customers USING COVERING INDEX sqlite_autoindex_customers_1'))).toBe(1_010_000)
    expect(price(plan('4 0 MULTI-INDEX OR', '5 4 INDEX 1', '11 5 SEARCH orders USING INDEX orders_by_customer (customer_id=?)', '16 4 INDEX 2', '22 16 SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)'))).toBe(201)
  })

  it('prices an automatic index at the table per lookup plus one build', () => {
    expect(price(plan('3 0 SCAN c USING COVERING INDEX sqlite_autoindex_customers_1', '21 0 SEARCH o USING AUTOMATIC COVERING INDEX (note=?)'))).toBe(10_000 + 10_000 * 1e6 + 1e6)
  })

  it('prices VALUES by its rows', () => {
    expect(price(plan('9 0 SCAN 2-ROW VALUES CLAUSE'))).toBe(2)
  })

  it.each([
    ['an unknown step', plan('2 0 SCAN orders', '3 0 TELEPORT orders')],
    ['an unknown compound member', plan('1 0 COMPOUND QUERY', '2 1 SIDEWAYS SUBQUERY')],
    ['an empty plan', []],
  ])('fails closed on %s', (_, rows) => {
    expect(pricePlan(rows, stats, { recursiveRows: new Map(), aliases: new Map(), inListProduct: 1 })).toMatchObject({ ok: false, reason: 'unreadable' })
  })
})

describe('work budget: the refusal message', () => {
  it('names the size as a power of ten, the loops that multiply, the limit and what to do', () => {
    const message = overBudgetMessage(8.1e9, 1e7, [
      { what: 'a scan of orders (300 rows)', rows: 300 },
      { what: 'a scan of orders (300 rows)', rows: 300 },
    ])
    expect(message).toBe('this query would visit about 10¹⁰ rows (a scan of orders (300 rows) × a scan of orders (300 rows)); the limit is 10⁷ rows: add a join condition or a WHERE on an indexed column')
  })

  it('writes powers of ten with superscript digits', () => {
    expect(powerOfTen(1)).toBe('10⁰')
    expect(powerOfTen(2.5e13)).toBe('10¹³')
    expect(powerOfTen(1e100)).toBe('10¹⁰⁰')
  })
})
