// executeReadOnly against a real D1 (workerd, schema.sql + demo data applied
// by test/support/apply-schema.ts): every attack of the shared table is
// refused and leaves the database as it was; every legitimate query returns
// the same rows as running it directly; the row and byte caps hold; SQL
// errors come back as one clean line; a write reported by D1 withholds rows.
import { env } from 'cloudflare:workers'
import { beforeAll, describe, expect, it } from 'vitest'
import { executeReadOnly, type ExecuteOptions, type ExecuteResult } from '../../src/sql/execute.ts'
import { ATTACKS, BUSINESS_TABLES, LEGIT } from '../support/sql-cases.ts'

const opts: ExecuteOptions = { allowedTables: BUSINESS_TABLES, maxRows: 500, maxBytes: 256 * 1024 }

/** Row counts of every table an attack could touch, and the schema's size. */
async function snapshot(): Promise<Record<string, number>> {
  const tables = ['customers', 'orders', 'products', 'tickets', 'audit_log', 'audit_checkpoint']
  const out: Record<string, number> = {}
  for (const t of tables) {
    const row = await env.DB.prepare(`SELECT count(*) AS n FROM ${t}`).first<{ n: number }>()
    out[t] = row?.n ?? -1
  }
  const schema = await env.DB.prepare('SELECT count(*) AS n, group_concat(name) AS names FROM sqlite_master').first<{ n: number; names: string }>()
  out.sqlite_master = schema?.n ?? -1
  const fts = await env.DB.prepare('SELECT count(*) AS n FROM search_index').first<{ n: number }>()
  out.search_index = fts?.n ?? -1
  return out
}

function expectOk(result: ExecuteResult): asserts result is Extract<ExecuteResult, { ok: true }> {
  if (!result.ok) throw new Error(`expected rows, got ${JSON.stringify(result)}`)
}

let before: Record<string, number>

beforeAll(async () => {
  before = await snapshot()
  expect(before).toMatchObject({ customers: 60, orders: 300, products: 120 })
})

describe('refuses every attack and leaves the database unchanged', () => {
  it.each(ATTACKS)('refuses $name ($code)', async ({ sql, code, message }) => {
    const result = await executeReadOnly(env.DB, sql, opts)
    expect(result).toMatchObject({ ok: false, kind: 'refused', code })
    if (result.ok || result.kind !== 'refused') return
    expect(result.message).toContain(message)
    expect(await snapshot()).toEqual(before)
  })
})

describe('runs legitimate queries with the same results as D1 itself', () => {
  it.each(LEGIT)('returns the right rows for $name', async ({ sql, rows, rowCount }) => {
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    // the wrapper must not change what the query means, its order included
    const direct = await env.DB.prepare(sql).all<Record<string, unknown>>()
    expect(result.rows).toEqual(direct.results)
    expect(result.truncated).toBe(false)
    expect(result.rowCount).toBe(result.rows.length)
    if (rows) expect(result.rows).toEqual(rows)
    if (rowCount !== undefined) expect(result.rowCount).toBe(rowCount)
    if (result.rows[0]) expect(result.columns).toEqual(Object.keys(result.rows[0]))
  })

  it('reports concrete demo data: order statuses add up to 300', async () => {
    const result = await executeReadOnly(env.DB, 'SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status', opts)
    expectOk(result)
    expect(result.columns).toEqual(['status', 'n'])
    expect(result.rows.map((r) => r.status)).toEqual(['cancelled', 'delivered', 'paid', 'pending', 'shipped'])
    expect(result.rows.reduce((sum, r) => sum + Number(r.n), 0)).toBe(300)
  })

  it('keeps both columns when a join selects two columns of the same name', async () => {
    const result = await executeReadOnly(env.DB, "SELECT o.id, c.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = 'ord_0001'", opts)
    expectOk(result)
    expect(result.columns).toHaveLength(2)
    expect(result.rows[0]?.id).toBe('ord_0001')
  })

  it('never reports a write for reads that sort, group, deduplicate or recurse', async () => {
    for (const sql of [
      'SELECT DISTINCT customer_id FROM orders ORDER BY total_cents DESC',
      'SELECT customer_id, group_concat(id) AS ids FROM orders GROUP BY customer_id ORDER BY count(*) DESC',
      'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 10000) SELECT count(*) AS n FROM c',
      'WITH m AS MATERIALIZED (SELECT * FROM orders) SELECT count(*) AS n FROM m a JOIN m b ON a.id = b.id',
    ]) {
      const result = await executeReadOnly(env.DB, sql, opts)
      expectOk(result)
    }
  })
})

describe('caps what comes back', () => {
  it('returns exactly maxRows rows and truncated "rows" when more exist', async () => {
    const result = await executeReadOnly(env.DB, 'SELECT id FROM orders ORDER BY id', { ...opts, maxRows: 25 })
    expectOk(result)
    expect(result.rowCount).toBe(25)
    expect(result.rows).toHaveLength(25)
    expect(result.truncated).toBe('rows')
    expect(result.rows[24]).toEqual({ id: 'ord_0025' })
  })

  it('does not claim truncation when the result has exactly maxRows rows', async () => {
    const result = await executeReadOnly(env.DB, 'SELECT id FROM customers', { ...opts, maxRows: 60 })
    expectOk(result)
    expect(result.rowCount).toBe(60)
    expect(result.truncated).toBe(false)
  })

  it('caps even a query whose own LIMIT is larger', async () => {
    const result = await executeReadOnly(env.DB, 'SELECT id FROM orders LIMIT 100000', { ...opts, maxRows: 10 })
    expectOk(result)
    expect(result.rowCount).toBe(10)
    expect(result.truncated).toBe('rows')
  })

  it('drops rows from the end to stay within maxBytes and says so', async () => {
    const maxBytes = 1000
    const result = await executeReadOnly(env.DB, 'SELECT * FROM customers ORDER BY id', { ...opts, maxBytes })
    expectOk(result)
    expect(result.truncated).toBe('bytes')
    expect(result.rowCount).toBeGreaterThan(0)
    expect(result.rowCount).toBeLessThan(60)
    expect(result.bytes).toBe(new TextEncoder().encode(JSON.stringify(result.rows)).length)
    expect(result.bytes).toBeLessThanOrEqual(maxBytes)
    expect(result.rows[0]?.id).toBe('cus_001')
    // one more row would not have fitted
    const all = await env.DB.prepare('SELECT * FROM customers ORDER BY id').all<Record<string, unknown>>()
    const next = JSON.stringify(all.results.slice(0, result.rowCount + 1))
    expect(new TextEncoder().encode(next).length).toBeGreaterThan(maxBytes)
  })

  it('returns no rows when even the first row is over the byte cap', async () => {
    const result = await executeReadOnly(env.DB, 'SELECT * FROM products', { ...opts, maxBytes: 10 })
    expectOk(result)
    expect(result).toMatchObject({ rowCount: 0, rows: [], truncated: 'bytes', bytes: 2 })
    expect(result.columns).toContain('sku')
  })

  it('counts bytes as UTF-8', async () => {
    const result = await executeReadOnly(env.DB, "SELECT 'é€😀' AS s", opts)
    expectOk(result)
    expect(result.bytes).toBe(new TextEncoder().encode(JSON.stringify([{ s: 'é€😀' }])).length)
  })

  it('reports an empty result with no columns and no truncation', async () => {
    const result = await executeReadOnly(env.DB, "SELECT * FROM customers WHERE id = 'nobody'", opts)
    expect(result).toEqual({ ok: true, columns: [], rows: [], rowCount: 0, truncated: false, bytes: 2 })
  })
})

describe('reports SQL errors as one clean line', () => {
  it('names a missing column with the offset in the caller\'s query', async () => {
    const result = await executeReadOnly(env.DB, 'SELECT foo FROM customers', opts)
    expect(result).toEqual({ ok: false, kind: 'refused', code: 'sql_error', message: 'no such column: foo at offset 7' })
  })

  it('translates offsets past leading comments', async () => {
    const result = await executeReadOnly(env.DB, '-- note\nSELECT id, nope FROM orders', opts)
    expect(result).toMatchObject({ code: 'sql_error', message: 'no such column: nope at offset 19' })
  })

  it('names a missing column in GROUP BY', async () => {
    const result = await executeReadOnly(env.DB, "SELECT count(*) FROM orders WHERE status = 'paid' GROUP BY nonsense", opts)
    expect(result).toMatchObject({ ok: false, kind: 'refused', code: 'sql_error' })
    if (result.ok || result.kind !== 'refused') return
    expect(result.message).toBe('no such column: nonsense at offset 59')
  })

  it('reports value-level errors such as malformed JSON', async () => {
    const result = await executeReadOnly(env.DB, "SELECT json_extract('{', '$') AS x", opts)
    expect(result).toEqual({ ok: false, kind: 'refused', code: 'sql_error', message: 'malformed JSON' })
  })

  it('reports a blow-up stopped by SQLite\'s length limit as an SQL error', async () => {
    const doubling = 'WITH RECURSIVE c(n, s) AS (SELECT 1, hex(1234567890) UNION ALL SELECT n + 1, s || s FROM c LIMIT 40) SELECT max(length(s)) AS l FROM c'
    const result = await executeReadOnly(env.DB, doubling, opts)
    expect(result).toEqual({ ok: false, kind: 'refused', code: 'sql_error', message: 'string or blob too big' })
  })

  it('never leaks D1_ERROR prefixes or SQLITE_ codes', async () => {
    for (const sql of ['SELECT * FROM customers WHERE', 'SELECT id FROM customers c JOIN orders o ON 1 WHERE id = 1', 'SELECT abs(-9223372036854775808)']) {
      const result = await executeReadOnly(env.DB, sql, opts)
      expect(result.ok).toBe(false)
      if (result.ok || result.kind !== 'refused') continue
      expect(result.message).not.toMatch(/D1_|SQLITE_|\n/)
    }
  })
})

describe('defence in depth: a write reported by D1 is an incident', () => {
  /** A D1 stand-in that answers every statement with the given meta. */
  function fakeD1(meta: Partial<D1Meta>, results: Record<string, unknown>[] = [{ secret: 'row' }]): Pick<D1Database, 'prepare'> {
    const full: D1Meta = { duration: 0, size_after: 0, rows_read: 1, rows_written: 0, last_row_id: 0, changed_db: false, changes: 0, ...meta }
    const statement = { all: async () => ({ success: true as const, meta: full, results }) }
    return { prepare: () => statement as unknown as D1PreparedStatement }
  }

  const writes: [string, Partial<D1Meta>][] = [
    ['changed_db', { changed_db: true }],
    ['rows_written', { rows_written: 3 }],
    ['changes', { changes: 1 }],
  ]
  it.each(writes)('withholds the rows when D1 reports %s', async (_, meta) => {
    const result = await executeReadOnly(fakeD1(meta), 'SELECT * FROM customers', opts)
    expect(result).toEqual({
      ok: false,
      kind: 'write_incident',
      meta: { changed_db: meta.changed_db ?? false, rows_written: meta.rows_written ?? 0, changes: meta.changes ?? 0 },
    })
    expect(JSON.stringify(result)).not.toContain('secret')
  })

  it('rethrows failures that are not SQL errors', async () => {
    const broken: Pick<D1Database, 'prepare'> = {
      prepare: () => ({ all: async () => { throw new Error('Network connection lost.') } }) as unknown as D1PreparedStatement,
    }
    await expect(executeReadOnly(broken, 'SELECT 1', opts)).rejects.toThrow('Network connection lost.')
  })
})

describe('SQLite behaviours the guard is built around', () => {
  it('reads a string literal after IN as a table name, so the guard checks it as one', async () => {
    await expect(env.DB.prepare("SELECT 1 IN 'customers'").all()).rejects.toThrow(/sub-select returns 8 columns/)
    const result = await executeReadOnly(env.DB, "SELECT 1 IN 'audit_log'", opts)
    expect(result).toMatchObject({ ok: false, code: 'table_not_allowed' })
  })

  it('resolves CTE names forward, which the guard treats as tables (it can only refuse more)', async () => {
    const sql = 'WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT count(*) AS n FROM a'
    expect(await env.DB.prepare(sql).first()).toEqual({ n: 1 })
    expect(await executeReadOnly(env.DB, sql, opts)).toMatchObject({ ok: false, code: 'table_not_allowed' })
  })

  it('stops a recursive CTE at the LIMIT of its compound select', async () => {
    const sql = 'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 10000) SELECT count(*) AS n, max(n) AS top FROM c'
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    expect(result.rows).toEqual([{ n: 10000, top: 10000 }])
  })
})
