// executeReadOnly against a real D1 (workerd, migrations/ + demo data applied
// by test/support/apply-schema.ts): every attack of the shared table is
// refused and leaves the database as it was; every legitimate query returns
// the same rows as running it directly; the row and byte caps hold; values
// are cut inside SQLite, so size bombs never reach the Worker; SQL errors
// come back as one clean line, D1 outages are rethrown; a write reported by
// D1 withholds rows.
import { env } from 'cloudflare:workers'
import { beforeAll, describe, expect, it } from 'vitest'
import { executeReadOnly, MAX_COLUMNS, MAX_VALUE_BYTES, TEXT_MARKER, type ExecuteOptions, type ExecuteResult } from '../../src/sql/execute.ts'
import { ATTACKS, BUSINESS_TABLES, LEGIT } from '../support/sql-cases.ts'

const opts: ExecuteOptions = { allowedTables: BUSINESS_TABLES, maxRows: 500, maxBytes: 256 * 1024, maxVisitedRows: 10_000_000 }

/**
 * What "the database is unchanged" means: a content digest of every table in
 * sqlite_schema (business tables, the audit log and checkpoint, the FTS table
 * and its shadow tables, whatever else is there), and the schema itself (type,
 * name, table and SQL text of every entry). Rows are digested in a stable
 * order (sorted JSON of every column), so only a change of content counts.
 */
async function snapshot(): Promise<Record<string, string>> {
  const entries = await env.DB.prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name').all<{ type: string; name: string; tbl_name: string; sql: string | null }>()
  const out: Record<string, string> = { sqlite_schema: await digest(entries.results) }
  // D1 keeps its own _cf_ tables out of reach of queries
  const tables = entries.results.filter((e) => e.type === 'table' && !e.name.startsWith('_cf_')).map((e) => e.name)
  const columns = await env.DB.prepare(
    "SELECT m.name AS t, group_concat(p.name, char(31)) AS cols FROM sqlite_schema m, pragma_table_info(m.name) p WHERE m.type = 'table' AND substr(m.name, 1, 4) <> '_cf_' GROUP BY m.name",
  ).all<{ t: string; cols: string }>()
  const colsOf = new Map(columns.results.map((r) => [r.t, r.cols.split('\u001f')]))
  const id = (name: string) => `"${name.replace(/"/g, '""')}"`
  // one round trip: per table its row count and every row (quote() of each column, blobs too), sorted
  const parts = tables.map((t) => {
    const row = (colsOf.get(t) ?? []).map((c) => `quote(${id(c)})`).join(" || ',' || ")
    return `SELECT '${t.replace(/'/g, "''")}' AS t, (SELECT count(*) FROM ${id(t)}) AS n, (SELECT group_concat(r, char(10)) FROM (SELECT ${row || "''"} AS r FROM ${id(t)} ORDER BY r)) AS content`
  })
  const dump = await env.DB.batch<{ t: string; n: number; content: string | null }>(parts.map((q) => env.DB.prepare(q)))
  for (const { t, n, content } of dump.map((r) => r.results[0]!)) out[t] = `${n}:${await digest(content ?? '')}`
  return out
}

async function digest(value: unknown): Promise<string> {
  const bytes = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify(value)))
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('')
}

function expectOk(result: ExecuteResult): asserts result is Extract<ExecuteResult, { ok: true }> {
  if (!result.ok) throw new Error(`expected rows, got ${JSON.stringify(result)}`)
}

const utf8 = (text: string) => new TextEncoder().encode(text).length

/** env.DB, recording the size of the JSON of the rows each statement handed to the Worker. */
/** The statements execute.ts sends before the query runs: the EXPLAIN gate's and the work budget's. */
const SERVER_READS = /^(?:EXPLAIN |SELECT tbl_name, rootpage FROM sqlite_schema|SELECT type, name, tbl_name, sql FROM sqlite_schema|SELECT tbl, idx, stat FROM sqlite_stat1|SELECT \(SELECT (?:max\(rowid\)|count\(\*\)) FROM )/

function recordingD1(): { db: Pick<D1Database, 'prepare'>; received: number[] } {
  const received: number[] = []
  const db = {
    prepare(sql: string) {
      const statement = env.DB.prepare(sql)
      // the EXPLAIN gate's and the work budget's reads hand back plans, root pages and sizes, not rows
      if (SERVER_READS.test(sql)) return statement
      return {
        async raw(options: { columnNames: true }) {
          const rows = await statement.raw(options)
          received.push(utf8(JSON.stringify(rows)))
          return rows
        },
        async all() {
          const result = await statement.all()
          received.push(utf8(JSON.stringify(result.results)))
          return result
        },
      } as unknown as D1PreparedStatement
    },
  }
  return { db, received }
}

let before: Record<string, string>

beforeAll(async () => {
  before = await snapshot()
  expect(before).toMatchObject({ customers: expect.stringMatching(/^60:/), orders: expect.stringMatching(/^300:/), products: expect.stringMatching(/^120:/) })
  // every table is covered, the hidden ones included
  expect(Object.keys(before)).toEqual(expect.arrayContaining(['sqlite_schema', 'audit_log', 'audit_checkpoint', 'tickets', 'search_index', 'search_index_data', 'search_index_config']))
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
    expect(result.valuesTruncated).toBe(0)
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
    expect(result.columns).toEqual(['id', 'id:1'])
    expect(result.rows).toEqual([{ id: 'ord_0001', 'id:1': expect.stringMatching(/^cus_/) }])
  })

  it('keeps the order of the query through the capping layers', async () => {
    for (const sql of [
      'SELECT id, total_cents FROM orders ORDER BY total_cents DESC, id DESC',
      'SELECT id, name FROM products ORDER BY name, id',
      'SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id ORDER BY n DESC, customer_id',
    ]) {
      const result = await executeReadOnly(env.DB, sql, opts)
      expectOk(result)
      expect(result.rows).toEqual((await env.DB.prepare(sql).all()).results)
    }
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

  it('reports an empty result with its columns and no truncation', async () => {
    const result = await executeReadOnly(env.DB, "SELECT * FROM customers WHERE id = 'nobody'", opts)
    expect(result).toEqual({
      ok: true,
      columns: ['id', 'name', 'company', 'email', 'phone', 'address', 'tier', 'created_at'],
      rows: [],
      rowCount: 0,
      truncated: false,
      valuesTruncated: 0,
      bytes: 2,
    })
  })

  it('stops sending rows inside SQLite once they are past maxBytes', async () => {
    const { db, received } = recordingD1()
    const result = await executeReadOnly(db, 'SELECT * FROM orders ORDER BY id', { ...opts, maxBytes: 1000 })
    expectOk(result)
    expect(result.truncated).toBe('bytes')
    const direct = await env.DB.prepare('SELECT * FROM orders ORDER BY id').all<Record<string, unknown>>()
    expect(result.rows).toEqual(direct.results.slice(0, result.rowCount))
    // the probe's column names, then the kept rows and the one that did not fit: not 300 rows
    expect(received).toHaveLength(2)
    expect(received[1]).toBeLessThan(2000)
    expect(utf8(JSON.stringify(direct.results))).toBeGreaterThan(50_000)
  })
})

describe('caps values inside SQLite, so size bombs never reach the Worker', () => {
  /** Every value's size in the JSON a client would get. */
  function largestValue(rows: Record<string, unknown>[]): number {
    let max = 0
    for (const row of rows) for (const value of Object.values(row)) max = Math.max(max, typeof value === 'string' ? utf8(value) : utf8(JSON.stringify(value)))
    return max
  }
  /** Most that may cross from D1 to the Worker: maxBytes, plus the one row that did not fit. */
  const received = (maxBytes: number) => maxBytes + MAX_COLUMNS * (MAX_VALUE_BYTES * 4 + 16)

  it('refuses the nested hex() bomb in the guard', async () => {
    const bomb = `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r LIMIT 10000) SELECT n, ${'hex('.repeat(20)}'a'${')'.repeat(20)} AS big FROM r`
    expect(await executeReadOnly(env.DB, bomb, opts)).toMatchObject({ ok: false, code: 'function_not_allowed', message: expect.stringContaining('hex() nested inside hex()') })
  })

  it('cuts a hex() bomb chained through CTEs (501 rows of 1 MiB) to 4 KiB per value inside SQLite', async () => {
    const chain = Array.from({ length: 19 }, (_, i) => `h${i + 1}(v) AS (SELECT hex(v) FROM h${i})`).join(', ')
    const bomb = `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 10000), h0(v) AS (SELECT hex('a')), ${chain} SELECT n, v AS big FROM r, h19`
    // what the query makes: 1 MiB per row
    expect(await env.DB.prepare(`SELECT length(big) AS l FROM (${bomb}) LIMIT 1`).first()).toEqual({ l: 2 ** 20 })
    const { db, received: got } = recordingD1()
    const result = await executeReadOnly(db, bomb, opts)
    expectOk(result)
    expect(result.columns).toEqual(['n', 'big'])
    expect(result.truncated).toBe('bytes')
    expect(result.rowCount).toBeGreaterThan(50)
    expect(result.valuesTruncated).toBe(result.rowCount)
    expect(largestValue(result.rows)).toBeLessThanOrEqual(MAX_VALUE_BYTES)
    for (const [i, row] of result.rows.entries()) {
      expect(row.n).toBe(i + 1)
      expect(row.big).toMatch(/^[0-9A-F]+…$/)
      expect(utf8(row.big as string)).toBe(MAX_VALUE_BYTES)
    }
    expect(result.bytes).toBeLessThanOrEqual(opts.maxBytes)
    expect(utf8(JSON.stringify(result))).toBeLessThan(opts.maxBytes + 1000)
    // 500 MiB made inside SQLite; about maxBytes crossed to the Worker
    expect(got[1]).toBeLessThan(received(opts.maxBytes))
  })

  it('cuts `||` doubling in a recursive CTE, value by value', async () => {
    const sql = "WITH RECURSIVE d(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM d LIMIT 21) SELECT n, length(s) AS len, s FROM d"
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    expect(result.rowCount).toBe(21)
    expect(result.truncated).toBe(false)
    expect(result.valuesTruncated).toBe(8)
    for (const row of result.rows) {
      const n = row.n as number
      expect(row.len).toBe(2 ** (n - 1))
      expect(row.s).toBe(2 ** (n - 1) <= MAX_VALUE_BYTES ? 'x'.repeat(2 ** (n - 1)) : `${'x'.repeat(MAX_VALUE_BYTES - 3)}${TEXT_MARKER}`)
    }
  })

  it('keeps the bytes that reach the Worker near maxBytes even for 64 columns of 256 KiB', { timeout: 30_000 }, async () => {
    const columns = Array.from({ length: MAX_COLUMNS - 1 }, (_, i) => `s AS s${i}`).join(', ')
    const sql = `WITH RECURSIVE d(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM d LIMIT 19), r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 10000) SELECT r.n, ${columns} FROM r, d WHERE d.n = 19`
    const { db, received: got } = recordingD1()
    const result = await executeReadOnly(db, sql, opts)
    expectOk(result)
    expect(result.columns).toHaveLength(MAX_COLUMNS)
    expect(result.truncated).toBe('bytes')
    expect(result.rowCount).toBe(1)
    expect(result.valuesTruncated).toBe(MAX_COLUMNS - 1)
    // without the budget inside SQLite: 501 rows x 63 x 4 KiB = 130 MB
    expect(got[1]).toBeLessThan(received(opts.maxBytes))
  })

  it('caps a legitimate long text, keeps short values and the types of numbers and NULL', async () => {
    const sql =
      "SELECT id, price_cents, price_cents / 100.0 AS price, NULL AS missing, description, (SELECT group_concat(description, ' | ') FROM products) AS catalogue FROM products ORDER BY id LIMIT 3"
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    const direct = (await env.DB.prepare(sql).all<Record<string, unknown>>()).results
    const full = direct[0]!.catalogue as string
    expect(utf8(full)).toBeGreaterThan(MAX_VALUE_BYTES)
    expect(result.valuesTruncated).toBe(3)
    expect(result.truncated).toBe(false)
    for (const [i, row] of result.rows.entries()) {
      expect(row.id).toBe(direct[i]!.id)
      expect(row.description).toBe(direct[i]!.description)
      expect(typeof row.price_cents).toBe('number')
      expect(Number.isInteger(row.price_cents)).toBe(true)
      expect(row.price).toBe(direct[i]!.price)
      expect(typeof row.price).toBe('number')
      expect(row.missing).toBeNull()
      const cut = row.catalogue as string
      expect(cut.endsWith(TEXT_MARKER)).toBe(true)
      expect(utf8(cut)).toBeLessThanOrEqual(MAX_VALUE_BYTES)
      expect(full.startsWith(cut.slice(0, -1))).toBe(true)
    }
  })

  it('cuts multi-byte text on a character boundary, within 4 KiB', async () => {
    const sql = "WITH RECURSIVE d(n, s) AS (SELECT 1, 'é€😀' UNION ALL SELECT n + 1, s || s FROM d LIMIT 12) SELECT s FROM d WHERE n = 12"
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    const cut = result.rows[0]!.s as string
    expect(result.valuesTruncated).toBe(1)
    expect(utf8(cut)).toBeLessThanOrEqual(MAX_VALUE_BYTES)
    expect(utf8(cut)).toBeGreaterThan(MAX_VALUE_BYTES / 2)
    expect(cut.endsWith(TEXT_MARKER)).toBe(true)
    expect('é€😀'.repeat(2 ** 11).startsWith(cut.slice(0, -1))).toBe(true)
  })

  it('cuts a text hidden behind a NUL (length() stops there) and a blob', async () => {
    const sql =
      "WITH RECURSIVE d(n, s, b) AS (SELECT 1, unhex('00') || 'x', x'ab' UNION ALL SELECT n + 1, s || s, CAST(b || b AS BLOB) FROM d LIMIT 16) SELECT length(s) AS chars, s, typeof(b) AS t, b FROM d WHERE n = 16"
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    const row = result.rows[0]!
    expect(row.chars).toBe(0)
    expect(row.t).toBe('blob')
    expect(result.valuesTruncated).toBe(2)
    expect(utf8(row.s as string)).toBeLessThanOrEqual(MAX_VALUE_BYTES)
    // D1 returns a blob as an array of byte values; cut to MAX_VALUE_BYTES, no marker possible
    expect(row.b).toHaveLength(MAX_VALUE_BYTES)
    expect((row.b as number[]).every((byte) => byte === 0xab)).toBe(true)
  })

  it('cuts a text that is not valid UTF-8 (one lead byte, then 64 KiB of continuation bytes: one "character" for substr)', async () => {
    const sql =
      "WITH RECURSIVE d(n, b) AS (SELECT 1, x'80' UNION ALL SELECT n + 1, CAST(b || b AS BLOB) FROM d LIMIT 17) SELECT length(t) AS chars, length(CAST(t AS BLOB)) AS bytes, t FROM (SELECT x'C0' || b AS t FROM d WHERE n = 17)"
    const { db, received: got } = recordingD1()
    const result = await executeReadOnly(db, sql, opts)
    expectOk(result)
    expect(result.rows[0]).toMatchObject({ chars: 1, bytes: 2 ** 16 + 1 })
    expect(result.valuesTruncated).toBe(1)
    expect((result.rows[0]!.t as string).endsWith(TEXT_MARKER)).toBe(true)
    // D1 decodes the invalid bytes to U+FFFD (3 bytes each): still bounded
    expect(got[1]).toBeLessThan(4 * MAX_VALUE_BYTES)
  })

  it('counts a cut blob', async () => {
    const sql = "WITH RECURSIVE d(n, b) AS (SELECT 1, x'ab' UNION ALL SELECT n + 1, CAST(b || b AS BLOB) FROM d LIMIT 14) SELECT n, b FROM d WHERE n >= 13"
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    expect(result.rows.map((r) => (r.b as number[]).length)).toEqual([MAX_VALUE_BYTES, MAX_VALUE_BYTES])
    expect(result.valuesTruncated).toBe(1)
  })

  it('cuts duplicate columns (id, id:1) separately', async () => {
    const sql =
      "WITH RECURSIVE d(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM d LIMIT 14) SELECT o.id, c.id, d.s, d.n AS s FROM orders o JOIN customers c ON c.id = o.customer_id, d WHERE o.id = 'ord_0001' AND d.n = 14"
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    expect(result.columns).toEqual(['id', 'id:1', 's', 's:1'])
    expect(result.rows).toEqual([{ id: 'ord_0001', 'id:1': expect.stringMatching(/^cus_/), s: `${'x'.repeat(MAX_VALUE_BYTES - 3)}${TEXT_MARKER}`, 's:1': 14 }])
    expect(result.valuesTruncated).toBe(1)
  })

  it('handles column names that need quoting', async () => {
    const sql = `SELECT 1 AS "a""b", 'x' AS "c d", 2 AS "__proto__", 3 AS "q", 4 AS "1+1", 5 AS "é"`
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    expect(result.columns).toEqual(['a"b', 'c d', '__proto__', 'q', '1+1', 'é'])
    expect(JSON.stringify(result.rows)).toBe('[{"a\\"b":1,"c d":"x","__proto__":2,"q":3,"1+1":4,"é":5}]')
  })

  it(`refuses more than ${MAX_COLUMNS} output columns, accepts ${MAX_COLUMNS}`, async () => {
    const select = (n: number) => `SELECT ${Array.from({ length: n }, (_, i) => `${i} AS c${i}`).join(', ')}`
    const ok = await executeReadOnly(env.DB, select(MAX_COLUMNS), opts)
    expectOk(ok)
    expect(ok.columns).toHaveLength(MAX_COLUMNS)
    expect(ok.rows[0]?.c63).toBe(63)
    expect(await executeReadOnly(env.DB, select(MAX_COLUMNS + 1), opts)).toEqual({
      ok: false,
      kind: 'refused',
      code: 'too_many_columns',
      message: `the query returns ${MAX_COLUMNS + 1} columns; at most ${MAX_COLUMNS} are allowed: select only the columns you need`,
    })
  })

  it('keeps columns apart when SQLite gives duplicates random suffixes (id:1068815424)', async () => {
    const sql =
      "SELECT * FROM orders o, customers c, products p, orders o2, customers c2, products p2 WHERE o.id = 'ord_0001' AND o2.id = o.id AND c.id = o.customer_id AND c2.id = c.id AND p.id = o.product_id AND p2.id = p.id"
    const result = await executeReadOnly(env.DB, sql, opts)
    expectOk(result)
    expect(result.columns).toHaveLength(50)
    expect(new Set(result.columns).size).toBe(50)
    expect(result.columns.filter((c) => c.startsWith('id:')).length).toBe(5)
    const direct = await env.DB.prepare(sql).raw()
    expect(Object.values(result.rows[0]!)).toEqual(direct[0])
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
  function fakeD1(meta: Partial<D1Meta>, results: Record<string, unknown>[] = [{ c0: 'secret row', cut: 0 }]): Pick<D1Database, 'prepare'> {
    const full: D1Meta = { duration: 0, size_after: 0, rows_read: 1, rows_written: 0, last_row_id: 0, changed_db: false, changes: 0, ...meta }
    const statement = { raw: async () => [['secret']], all: async () => ({ success: true as const, meta: full, results }) }
    // the work budget reads a plan: one scan of customers
    const plan = { all: async () => ({ success: true as const, meta: full, results: [{ id: 2, parent: 0, detail: 'SCAN customers' }] }) }
    return { prepare: (sql: string) => (sql.startsWith('EXPLAIN QUERY PLAN ') ? plan : statement) as unknown as D1PreparedStatement }
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
})

describe('tells SQL errors from D1 failures', () => {
  /** A D1 stand-in whose statements fail with `message` (the probe, or only the run). */
  function failingD1(message: string, only?: 'run'): Pick<D1Database, 'prepare'> {
    const fail = async () => {
      throw new Error(message)
    }
    const raw = only === 'run' ? async () => [['one']] : fail
    return { prepare: () => ({ raw, all: fail }) as unknown as D1PreparedStatement }
  }

  it.each([
    'Network connection lost.',
    'D1_ERROR: Network connection lost.',
    'D1_ERROR: Internal error in D1 DB storage caused object to be reset.',
    'D1_ERROR: D1 DB is overloaded. Requests queued for too long.',
    'D1_ERROR: database is locked: SQLITE_BUSY',
  ])('rethrows %j for the tool boundary to report as an internal error', async (message) => {
    await expect(executeReadOnly(failingD1(message), 'SELECT 1 AS one', opts)).rejects.toThrow(message)
    await expect(executeReadOnly(failingD1(message, 'run'), 'SELECT 1 AS one', opts)).rejects.toThrow(message)
  })

  it('refuses an SQL error the query can fix', async () => {
    const result = await executeReadOnly(failingD1('D1_ERROR: no such column: foo: SQLITE_ERROR'), 'SELECT foo FROM customers', opts)
    expect(result).toEqual({ ok: false, kind: 'refused', code: 'sql_error', message: 'no such column: foo' })
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

// Last in the file: these change the database on purpose (and the FTS shadow
// tables do not return to the same bytes), so they run after every attack.
describe('the "database unchanged" snapshot sees a change of content and of schema', () => {
  it('a changed value in one row, with the same row count, changes the snapshot', async () => {
    const start = await snapshot()
    const row = await env.DB.prepare("SELECT name FROM customers WHERE id = 'cus_001'").first<{ name: string }>()
    await env.DB.prepare("UPDATE customers SET name = name || '!' WHERE id = 'cus_001'").run()
    try {
      const after = await snapshot()
      expect(after.customers).not.toBe(start.customers)
      expect(after.customers!.startsWith('60:')).toBe(true)
    } finally {
      // (the FTS triggers rewrite their shadow tables, so only the business row is back as it was)
      await env.DB.prepare("UPDATE customers SET name = ?1 WHERE id = 'cus_001'").bind(row!.name).run()
    }
    expect((await snapshot()).customers).toBe(start.customers)
  })

  it('a new index (schema text only, no row changed) changes the snapshot', async () => {
    const start = await snapshot()
    await env.DB.prepare('CREATE INDEX snapshot_probe ON products (name)').run()
    try {
      const after = await snapshot()
      expect(after.sqlite_schema).not.toBe(start.sqlite_schema)
      expect({ ...after, sqlite_schema: '' }).toEqual({ ...start, sqlite_schema: '' })
    } finally {
      await env.DB.prepare('DROP INDEX snapshot_probe').run()
    }
    expect(await snapshot()).toEqual(start)
  })
})
