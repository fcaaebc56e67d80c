// Wrangler builds alias `sql-parser-cst` to src/sql/sql-parser-lite.ts (see
// wrangler.toml [alias]); the vitest workers pool runs the package entry. These
// tests hold the lite entry to the package entry's results, errors and
// parser-work count, and run the guard's attack and legit tables through it.
import { describe, expect, it, vi } from 'vitest'
import { guardQuery } from '../../src/sql/guard.ts'
import * as lite from '../../src/sql/sql-parser-lite.ts'
import { ATTACKS, BUSINESS_TABLES, LEGIT } from '../support/sql-cases.ts'

// Every import of 'sql-parser-cst' in this file's graph (the guard's) gets the lite
// parse; `entry` below is the package's own, through importActual.
vi.mock('sql-parser-cst', async () => {
  const actual = await vi.importActual<typeof import('sql-parser-cst')>('sql-parser-cst')
  const swapped = await import('../../src/sql/sql-parser-lite.ts')
  return { ...actual, parse: swapped.parse, FormattedSyntaxError: swapped.FormattedSyntaxError }
})

const entry = await vi.importActual<typeof import('sql-parser-cst')>('sql-parser-cst')

const QUERIES = [...ATTACKS, ...LEGIT].map((c) => c.sql)

class BudgetExceeded extends Error {}

/**
 * The guard's parse options, with its work budget on `dialect` (the attack
 * table holds parser bombs that only the budget stops) and a count of reads.
 */
function countingOptions(sql: string): { options: Parameters<typeof lite.parse>[1]; reads: () => number } {
  let n = 0
  const budget = 20_000 + 250 * sql.length
  return {
    options: {
      get dialect(): 'sqlite' {
        if (++n > budget) throw new BudgetExceeded()
        return 'sqlite'
      },
      includeRange: true,
      paramTypes: ['?', '?nr', ':name', '$name', '@name'],
      filename: 'query',
    },
    reads: () => n,
  }
}

function outcome(parse: typeof lite.parse, sql: string, errorClass: typeof lite.FormattedSyntaxError) {
  const { options, reads } = countingOptions(sql)
  try {
    return { ok: true, tree: parse(sql, options), reads: reads() }
  } catch (error) {
    const kind = error instanceof BudgetExceeded ? 'budget' : error instanceof errorClass ? 'formatted' : (error as Error).name
    return { ok: false, kind, message: (error as Error).message, reads: reads() }
  }
}

describe('sql-parser-lite: the same parser as the package entry', () => {
  it.each(QUERIES)('same tree or same error, same dialect reads: %s', (sql) => {
    const a = outcome(entry.parse, sql, entry.FormattedSyntaxError)
    const b = outcome(lite.parse, sql, lite.FormattedSyntaxError)
    expect(b).toEqual(a)
  })

  it('reports a syntax error as a FormattedSyntaxError, as the entry does', () => {
    const b = outcome(lite.parse, 'SELEC 1', lite.FormattedSyntaxError)
    expect(b).toMatchObject({ ok: false, kind: 'formatted' })
    expect(b.ok === false && b.message).toMatch(/^Syntax Error: Unexpected/)
  })

  it('refuses a missing or unknown dialect, as the entry does', () => {
    expect(() => lite.parse('SELECT 1', {} as never)).toThrow('No SQL dialect specified.')
    expect(() => lite.parse('SELECT 1', { dialect: 'oracle' } as never)).toThrow('Unsupported dialect name: "oracle"')
  })
})

describe('sql-parser-lite: the guard behind it', () => {
  const opts = { allowedTables: BUSINESS_TABLES, maxRows: 500 }

  it('is really the lite entry that the guard calls here', async () => {
    const mocked = await import('sql-parser-cst')
    expect(mocked.parse).toBe(lite.parse)
  })

  it.each(ATTACKS)('refuses $name ($code)', ({ sql, code, message }) => {
    const result = guardQuery(sql, opts)
    expect(result).toMatchObject({ ok: false, code })
    if (!result.ok) expect(result.message).toContain(message)
  })

  it.each(LEGIT)('accepts $name', ({ sql }) => {
    const result = guardQuery(sql, opts)
    if (!result.ok) throw new Error(`${result.code}: ${result.message}`)
  })
})
