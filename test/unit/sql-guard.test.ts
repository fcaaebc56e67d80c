import { describe, expect, it } from 'vitest'
import { guardQuery, MAX_QUERY_LENGTH, MAX_RECURSIVE_ROWS } from '../../src/sql/guard.ts'
import { ATTACKS, BUSINESS_TABLES, LEGIT } from '../support/sql-cases.ts'

const opts = { allowedTables: BUSINESS_TABLES, maxRows: 500 }

describe('SQL guard: attack strings are refused for the right reason', () => {
  it('has a table of at least 45 attacks and 18 legitimate queries', () => {
    expect(ATTACKS.length).toBeGreaterThanOrEqual(45)
    expect(LEGIT.length).toBeGreaterThanOrEqual(18)
  })

  it.each(ATTACKS)('refuses $name ($code)', ({ sql, code, message }) => {
    const result = guardQuery(sql, opts)
    expect(result).toMatchObject({ ok: false, code })
    if (result.ok) return
    expect(result.message).toContain(message)
  })

  it.each(ATTACKS)('refusal message for $name is one clean line', ({ sql }) => {
    const result = guardQuery(sql, opts)
    if (result.ok) throw new Error('accepted')
    expect(result.message).not.toMatch(/\n|\bat .*\.(ts|js):\d+|Error:/)
    expect(result.message.length).toBeLessThan(600)
  })
})

describe('SQL guard: legitimate queries pass', () => {
  it.each(LEGIT)('accepts $name', ({ sql }) => {
    const result = guardQuery(sql, opts)
    if (!result.ok) throw new Error(`${result.code}: ${result.message}`)
    expect(result.sql.startsWith('SELECT * FROM (\n')).toBe(true)
    expect(result.sql.endsWith('\n) LIMIT 501')).toBe(true)
  })
})

describe('SQL guard: the rewritten query', () => {
  it('wraps exactly the statement, without surrounding comments or semicolons', () => {
    const result = guardQuery(' -- lead\n SELECT id FROM orders ORDER BY id /* tail */ ; -- end', opts)
    expect(result).toEqual({ ok: true, sql: 'SELECT * FROM (\nSELECT id FROM orders ORDER BY id\n) LIMIT 501', tables: ['orders'] })
  })

  it('asks for maxRows + 1 rows so truncation is visible', () => {
    const result = guardQuery('SELECT * FROM customers', { ...opts, maxRows: 7 })
    expect(result.ok && result.sql.endsWith(') LIMIT 8')).toBe(true)
  })

  it('reports the real tables read, not CTE names', () => {
    const result = guardQuery('WITH x AS (SELECT * FROM orders) SELECT * FROM x JOIN Customers c ON c.id = x.customer_id', opts)
    expect(result).toMatchObject({ ok: true, tables: ['customers', 'orders'] })
  })

  it('matches table names case-insensitively in ASCII only, as SQLite does', () => {
    expect(guardQuery('SELECT * FROM CUSTOMERS', opts).ok).toBe(true)
    // U+212A KELVIN SIGN lower-cases to "k" in JavaScript but not in SQLite
    expect(guardQuery('SELECT * FROM tic\u212Aets', opts)).toMatchObject({ ok: false, code: 'table_not_allowed' })
  })
})

describe('SQL guard: boundaries', () => {
  it('accepts a query of exactly the maximum length and refuses one character more', () => {
    const base = 'SELECT 1 -- '
    expect(guardQuery(base + 'x'.repeat(MAX_QUERY_LENGTH - base.length), opts).ok).toBe(true)
    expect(guardQuery(base + 'x'.repeat(MAX_QUERY_LENGTH - base.length + 1), opts)).toMatchObject({ code: 'too_long' })
  })

  it('accepts a recursive CTE limited to exactly the cap and refuses one row more', () => {
    const q = (n: number) => `WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT ${n}) SELECT count(*) FROM c`
    expect(guardQuery(q(MAX_RECURSIVE_ROWS), opts).ok).toBe(true)
    expect(guardQuery(q(MAX_RECURSIVE_ROWS + 1), opts)).toMatchObject({ code: 'unbounded_recursion' })
  })

  it('protects internal tables even when the caller lists them as allowed', () => {
    const careless = { allowedTables: [...BUSINESS_TABLES, 'audit_log', 'sqlite_master'], maxRows: 10 }
    expect(guardQuery('SELECT * FROM audit_log', careless)).toMatchObject({ code: 'table_not_allowed' })
    expect(guardQuery('SELECT * FROM sqlite_master', careless)).toMatchObject({ code: 'table_not_allowed' })
  })

  it('refuses every table when none is allowed', () => {
    expect(guardQuery('SELECT * FROM customers', { allowedTables: [], maxRows: 10 })).toMatchObject({ code: 'table_not_allowed' })
    expect(guardQuery('SELECT 1 AS one', { allowedTables: [], maxRows: 10 }).ok).toBe(true)
  })

  it('keeps CTE names out of scope outside their WITH', () => {
    const q = 'SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) JOIN x'
    expect(guardQuery(q, opts)).toMatchObject({ code: 'table_not_allowed', message: expect.stringContaining('table x') })
  })

  it('does not let main.<name> resolve to a CTE', () => {
    const q = 'WITH orders AS (SELECT 1) SELECT * FROM main.orders'
    expect(guardQuery(q, opts)).toMatchObject({ ok: true, tables: ['orders'] })
  })

  it('gives a position-aware parse error without a stack', () => {
    const result = guardQuery('SELECT *\nFROM customers\nWHERE id = ', opts)
    expect(result).toMatchObject({ ok: false, code: 'parse_error' })
    if (result.ok) return
    expect(result.message).toMatch(/^syntax error at line 3, column 12: unexpected end of input/)
  })

  it('bounds its own CPU time on parser backtracking bombs', () => {
    for (const sql of ATTACKS.filter((a) => a.code === 'too_complex').map((a) => a.sql)) {
      const start = performance.now()
      guardQuery(sql, opts)
      expect(performance.now() - start).toBeLessThan(500)
    }
  })

  it('rejects nonsensical maxRows at the call site', () => {
    expect(() => guardQuery('SELECT 1', { allowedTables: [], maxRows: 0 })).toThrow(RangeError)
    expect(() => guardQuery('SELECT 1', { allowedTables: [], maxRows: 1.5 })).toThrow(RangeError)
  })
})
