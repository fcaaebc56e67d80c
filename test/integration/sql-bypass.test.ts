// Issue #13: the three execute_query inputs of the review are refused, each
// gate alone. The character after LIMIT in the first two is U+00A0 (no-break
// space): the parser read `LIMIT <identifier>, <column>`, SQLite reads a
// table alias "LIMIT\u00a0" and a cross join with a forbidden table.
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { explainGate } from '../../src/sql/explain-gate.ts'
import { BUSINESS_TABLES } from '../support/sql-cases.ts'
import { connectClient } from '../support/worker.ts'

const NBSP = '\u00a0'
const AUDIT_LOG_LEAK = `SELECT * FROM (SELECT seq, sub, token_id, input_json FROM (SELECT 1) LIMIT${NBSP}, audit_log) WHERE seq >= 2`
const SCHEMA_LEAK = `SELECT * FROM (SELECT name, sql FROM (SELECT 1) LIMIT${NBSP}, sqlite_master) LIMIT 3`
const CTE_PRODUCT = 'WITH a(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM a LIMIT 10000) SELECT count(*) FROM a, a b'

type TextBlock = { type: 'text'; text: string }

describe('refuses the three inputs of issue #13 through execute_query', () => {
  it.each([
    ['rows of audit_log through a U+00A0 after LIMIT', AUDIT_LOG_LEAK, /non-ASCII/],
    ['the schema through a U+00A0 after LIMIT', SCHEMA_LEAK, /non-ASCII/],
    ['10^8 rows from a recursive CTE joined with itself', CTE_PRODUCT, /multiply to over/],
  ])('refuses %s', async (_name, query, message) => {
    const client = await connectClient({ role: 'admin', sub: 'issue13-bypass' })
    const result = await client.callTool({ name: 'execute_query', arguments: { query } })
    await client.close()
    expect(result.isError).toBe(true)
    const text = (result.content as TextBlock[])[0]!.text
    expect(text).toMatch(/^query refused: /)
    expect(text).toMatch(message)
    expect(text).not.toMatch(/CREATE TABLE|"seq":/) // no schema text, no audit rows
    expect(result.structuredContent).toBeUndefined()
  }, 30_000) // the first MCP connection of the file starts the Worker: slow on a loaded 2-core machine
})

describe('the EXPLAIN gate alone (parser guard bypassed) refuses what SQLite would read outside the business tables', () => {
  it('refuses the U+00A0 audit_log read: SQLite opens the audit_log b-tree', async () => {
    // the query is valid SQLite as it is: check that first, so the refusal is the gate's
    await expect(env.DB.prepare(`EXPLAIN ${AUDIT_LOG_LEAK}`).all()).resolves.toBeTruthy()
    const gate = await explainGate(env.DB, AUDIT_LOG_LEAK, BUSINESS_TABLES)
    expect(gate).toMatchObject({ ok: false, message: expect.stringContaining('not queryable') })
  })

  it('refuses the U+00A0 sqlite_master read: SQLite opens root page 1', async () => {
    await expect(env.DB.prepare(`EXPLAIN ${SCHEMA_LEAK}`).all()).resolves.toBeTruthy()
    const gate = await explainGate(env.DB, SCHEMA_LEAK, BUSINESS_TABLES)
    expect(gate).toMatchObject({ ok: false, message: expect.stringContaining('not queryable') })
  })

  it('refuses a plain read of audit_log, an FTS virtual table and a pragma function', async () => {
    for (const sql of ['SELECT * FROM audit_log', "SELECT * FROM search_index WHERE search_index MATCH 'gold'", "SELECT * FROM pragma_table_info('audit_log')"]) {
      const gate = await explainGate(env.DB, sql, BUSINESS_TABLES)
      expect(gate, sql).toMatchObject({ ok: false })
    }
  })

  it('fails closed when EXPLAIN itself fails', async () => {
    const gate = await explainGate(env.DB, 'SELECT * FROM no_such_table', BUSINESS_TABLES)
    expect(gate).toMatchObject({ ok: false, message: expect.stringContaining('EXPLAIN failed') })
  })

  it('lets through reads of business tables and their indexes, reporting the b-trees opened', async () => {
    const gate = await explainGate(env.DB, "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = 'paid'", BUSINESS_TABLES)
    expect(gate.ok).toBe(true)
    if (gate.ok) expect(gate.opened.length).toBeGreaterThanOrEqual(2)
  })

  it('refuses the same business read when the allow-list does not name the table', async () => {
    const gate = await explainGate(env.DB, 'SELECT id FROM orders', ['customers'])
    expect(gate.ok).toBe(false)
  })
})
