// Differential fuzz of the SQL guard against SQLite itself (issue #13, item 2).
//
// fast-check builds queries from templates (the LIMIT-alias shape,
// joins, IN <table>, CTEs, scalar subqueries) and fills their gaps with
// Unicode whitespace (U+00A0, U+2000-U+200B, U+3000, U+FEFF, ...), comments
// (`--`, `/* */`, also holding non-ASCII text) and ASCII spaces; keywords get
// random case and look-alike letters (Cyrillic а/е/о, full-width); table
// names are business tables or protected ones (audit_log, audit_checkpoint,
// sqlite_master/sqlite_schema, d1_*, _cf_*, the FTS table and its shadows),
// plain, in another case, quoted with "", ``, [ ], schema-qualified, or with
// a look-alike letter.
//
// PROPERTY: for every query the PARSER guard accepts, SQLite's own view
// agrees: `EXPLAIN` of the guard's statement, run in workerd's D1, opens only
// b-trees of the tables the guard says it reads (and their indexes). That is
// the EXPLAIN gate (src/sql/explain-gate.ts) asked with the guard's own
// `tables` as the allow-list, which is stricter than the business tables:
// a guard that saw `customers` while SQLite opens `orders` fails too. A query
// SQLite cannot compile reads nothing and passes (counted, see below).
//
// The guard has two defences against this kind of differential: the
// refusal of non-ASCII characters outside quotes, and the identifier scope
// checks (a column in LIMIT/OFFSET, a qualifier naming no FROM source, an
// undefined window). The same pass checks each defence ALONE (the other
// switched off with GuardTestSwitches, a test-only third argument of
// guardQuery that execute.ts never passes): SQLite must then still read only
// business tables.
//
// PROOF THAT IT FINDS THE BYPASS: the same seed, the same queries, against the
// guard with both defences switched off (the guard before issue #13) must
// produce a counterexample that reads a protected table (with this seed:
// `... (SELECT 1)-- <U+3000>\n limit<U+2002>-- ...,-- ...\nSearch_index_config)`,
// the LIMIT-alias shape with another space and comments around it).
// Checked by hand too (issue #13 report): making firstNonAsciiOutsideQuotes
// return -1, or hard-wiring scopeChecks to false, in src/sql/guard.ts makes
// the first test fail: the variant left with no defence finds the read.
// Deterministic: a fixed seed and numRuns (1000 queries; the bypass turns up at the 893rd); 5-20 s on 2 cores.
import { env } from 'cloudflare:workers'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { sqlErrorMessage } from '../../src/sql/execute.ts'
import { explainGate } from '../../src/sql/explain-gate.ts'
import { firstNonAsciiOutsideQuotes, guardQuery } from '../../src/sql/guard.ts'
import type { GuardTestSwitches } from '../../src/sql/guard.ts'
import { BUSINESS_TABLES } from '../support/sql-cases.ts'

const SEED = 20261202
/** The guard as it was before issue #13: no non-ASCII refusal, no identifier scope checks. */
const BEFORE_THE_FIX: GuardTestSwitches = { allowNonAscii: true, skipScopeChecks: true }
const NUM_RUNS = 1000
/** Bounds a hang, not a speed check: the runs take 10-30 s on 2 cores shared with other work. */
const TIMEOUT_MS = 120_000

const PROTECTED = [
  'audit_log', 'audit_checkpoint', 'sqlite_master', 'sqlite_schema', 'sqlite_temp_master',
  'd1_migrations', '_cf_KV', '_cf_METADATA', 'search_index', 'search_index_data', 'search_index_config',
] as const

const UNICODE_SPACES = [
  '\u00a0', '\u1680', '\u180e', '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006',
  '\u2007', '\u2008', '\u2009', '\u200a', '\u200b', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\ufeff',
]
const ASCII_SPACES = [' ', '  ', '\n', '\t', '\r\n']
const COMMENTS = ['/**/', '/* x */', '--x\n', '/*\u00a0*/', '-- \u3000\n', '/* ; */']

/** Look-alikes of ASCII letters: Cyrillic and full-width. */
const LOOKALIKE: Readonly<Record<string, string[]>> = {
  a: ['\u0430', '\uff41'], e: ['\u0435', '\uff45'], o: ['\u043e', '\uff4f'], c: ['\u0441', '\uff43'],
  i: ['\u0456', '\uff49'], s: ['\u0455', '\uff53'], E: ['\u0415', '\uff25'], O: ['\u041e', '\uff2f'],
  T: ['\u0422', '\uff34'], M: ['\u041c', '\uff2d'], I: ['\u0406', '\uff29'], L: ['\uff2c'], S: ['\u0405', '\uff33'],
}

const CLAUSE_WORDS = ['LIMIT', 'OFFSET', 'ORDER BY', 'GROUP BY', 'WHERE', 'AS']
const ASCII_COMMENTS = COMMENTS.filter((c) => /^[\x00-\x7f]*$/.test(c))

/**
 * The generator. Half of the queries are pure ASCII (comments, quoting and
 * case games only: many pass the guard, so SQLite is asked about them); the
 * other half mix in Unicode spaces and look-alike letters.
 */
function queries(unicode: boolean): fc.Arbitrary<string> {
  /** One gap between tokens: mostly one item, sometimes several, sometimes none. */
  const items = unicode ? [...UNICODE_SPACES, ...ASCII_SPACES, ...COMMENTS] : [...ASCII_SPACES, ...ASCII_COMMENTS]
  const gap: fc.Arbitrary<string> = fc.oneof(
    { weight: unicode ? 4 : 0, arbitrary: fc.constantFrom(...UNICODE_SPACES) },
    { weight: 4, arbitrary: fc.constantFrom(...ASCII_SPACES) },
    { weight: 2, arbitrary: fc.constantFrom(...(unicode ? COMMENTS : ASCII_COMMENTS)) },
    { weight: 2, arbitrary: fc.array(fc.constantFrom(...items), { minLength: 1, maxLength: 3 }).map((a) => a.join('')) },
    { weight: 1, arbitrary: fc.constant('') },
  )
  /** A gap where SQL needs one: never empty. */
  const sep = gap.map((g) => (g === '' ? ' ' : g))

  /** A word in random case, sometimes with one letter swapped for a look-alike. */
  const word = (text: string): fc.Arbitrary<string> => {
    const cased = fc.constantFrom(text, text.toLowerCase(), text.toUpperCase(), text[0]!.toUpperCase() + text.slice(1).toLowerCase())
    if (!unicode) return cased
    return fc.oneof(
      { weight: 3, arbitrary: cased },
      {
        weight: 1,
        arbitrary: fc.tuple(cased, fc.nat()).map(([w, n]) => {
          const spots = [...w].map((ch, i) => [ch, i] as const).filter(([ch]) => LOOKALIKE[ch])
          if (spots.length === 0) return w
          const [ch, i] = spots[n % spots.length]!
          const subs = LOOKALIKE[ch]!
          return w.slice(0, i) + subs[n % subs.length]! + w.slice(i + 1)
        }),
      },
    )
  }

  /** A table reference: a business or protected table, in any quoting the grammar allows. */
  const tableName = fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom<string>(...BUSINESS_TABLES) },
    { weight: 1, arbitrary: fc.constantFrom<string>(...PROTECTED) },
  )
  const tableRef: fc.Arbitrary<string> = fc
    .tuple(tableName.chain((t) => word(t)), fc.constantFrom('plain', 'plain', 'double', 'backtick', 'bracket', 'main', 'main-quoted'))
    .map(([t, quoting]) => {
      switch (quoting) {
        case 'double': return `"${t}"`
        case 'backtick': return `\`${t}\``
        case 'bracket': return `[${t}]`
        case 'main': return `main.${t}`
        case 'main-quoted': return `"main".[${t}]`
        default: return t
      }
    })

  const clauseWord = fc.constantFrom(...CLAUSE_WORDS).chain((w) =>
    fc.tuple(fc.tuple(...w.split(' ').map((part) => word(part))), sep).map(([parts, g]) => parts.join(g)),
  )

  // The templates: each a way the guard and SQLite could split a query differently.
  return fc.oneof(
    // the shape: a clause keyword read by SQLite as a table alias, then a cross join
    {
      weight: 3,
      arbitrary: fc.tuple(word('SELECT'), gap, clauseWord, gap, gap, tableRef, fc.constantFrom('', ' WHERE 1', ' LIMIT 3')).map(
        ([select, g1, kw, g2, g3, t, tail]) => `${select} * FROM (SELECT * FROM (SELECT 1)${g1}${kw}${g2},${g3}${t})${tail}`,
      ),
    },
    { weight: 1, arbitrary: fc.tuple(word('SELECT'), sep, word('FROM'), sep, tableRef, gap, clauseWord, gap, fc.constantFrom('', ', customers', ' 1', ' x', ' 1, 2')).map(
      ([select, g1, from, g2, t, g3, kw, g4, tail]) => `${select}${g1}*${g1}${from}${g2}${t}${g3}${kw}${g4}${tail}`,
    ) },
    { weight: 1, arbitrary: fc.tuple(word('SELECT'), sep, tableRef, sep, word('JOIN'), sep, tableRef).map(
      ([select, g1, a, g2, join, g3, b]) => `${select} 1 FROM ${a}${g1}x${g2}${join}${g3}${b} ON 1`,
    ) },
    { weight: 1, arbitrary: fc.tuple(word('SELECT'), tableRef, sep, word('IN'), gap, tableRef).map(
      ([select, a, g1, kw, g2, b]) => `${select} * FROM ${a} WHERE 1${g1}${kw}${g2}${b}`,
    ) },
    { weight: 1, arbitrary: fc.tuple(word('WITH'), sep, tableRef, sep, word('AS'), tableRef, word('SELECT'), sep, tableRef).map(
      ([w, g1, name, g2, as, body, select, g3, read]) => `${w}${g1}${name}${g2}${as} (SELECT * FROM ${body}) ${select}${g3}*${g3}FROM ${read}`,
    ) },
    { weight: 1, arbitrary: fc.tuple(word('SELECT'), gap, word('FROM'), sep, tableRef, gap).map(
      ([select, g1, from, g2, t, g3]) => `${select} (SELECT count(*)${g1}${from}${g2}${t}${g3}) AS n`,
    ) },
  )
}

const query: fc.Arbitrary<string> = fc.boolean().chain(queries)

interface Stats {
  generated: number
  accepted: number
  agreed: number
  compileErrors: number
}

/**
 * The property, for one guard variant: accepted ⇒ SQLite opens only what the
 * guard said it reads (`strict`), or only business tables (the security
 * property itself: the tables a leak would need).
 */
function differential(stats: Stats, mode: 'strict' | 'business', switches?: GuardTestSwitches) {
  return fc.asyncProperty(query, async (sql) => {
    stats.generated++
    const guard = guardQuery(sql, { allowedTables: BUSINESS_TABLES, maxRows: 50 }, switches)
    if (!guard.ok) return true
    stats.accepted++
    expect(guard.tables.every((t) => (BUSINESS_TABLES as readonly string[]).includes(t))).toBe(true)
    const gate = await explainGate(env.DB, guard.sql, mode === 'strict' ? guard.tables : BUSINESS_TABLES)
    if (gate.ok) {
      stats.agreed++
      return true
    }
    // SQLite could not compile it: nothing is read. Anything else is a disagreement.
    if (gate.cause !== undefined && sqlErrorMessage(gate.cause, `EXPLAIN ${guard.sql}`, sql) !== undefined) {
      stats.compileErrors++
      return true
    }
    return false
  })
}

/**
 * One pass for the guard and for each of its two defences alone (the other
 * switched off): the guard must pass `strict`, each defence alone `business`.
 * One EXPLAIN per accepted statement (the variants wrap the query alike).
 */
function defencesAgree(stats: Stats) {
  const variants: [string, 'strict' | 'business', GuardTestSwitches | undefined][] = [
    ['the guard', 'strict', undefined],
    ['the non-ASCII check alone', 'business', { skipScopeChecks: true }],
    ['the scope checks alone', 'business', { allowNonAscii: true }],
  ]
  return fc.asyncProperty(query, async (sql) => {
    stats.generated++
    const gates = new Map<string, Awaited<ReturnType<typeof explainGate>>>()
    const ascii = firstNonAsciiOutsideQuotes(sql) === -1
    for (const [name, mode, switches] of variants) {
      // on an ASCII query "the scope checks alone" is the guard itself: nothing new to ask
      if (ascii && switches?.allowNonAscii === true) continue
      const guard = guardQuery(sql, { allowedTables: BUSINESS_TABLES, maxRows: 50 }, switches)
      if (!guard.ok) continue
      if (switches === undefined) stats.accepted++
      const allowed = mode === 'strict' ? guard.tables : BUSINESS_TABLES
      const key = `${guard.sql}\u0000${allowed.join(',')}`
      const gate = gates.get(key) ?? (await explainGate(env.DB, guard.sql, allowed))
      gates.set(key, gate)
      if (gate.ok) {
        if (switches === undefined) stats.agreed++
        continue
      }
      if (gate.cause !== undefined && sqlErrorMessage(gate.cause, `EXPLAIN ${guard.sql}`, sql) !== undefined) {
        if (switches === undefined) stats.compileErrors++
        continue
      }
      throw new Error(`${name} accepted a query SQLite reads differently: ${gate.message}`)
    }
    return true
  })
}

const newStats = (): Stats => ({ generated: 0, accepted: 0, agreed: 0, compileErrors: 0 })

describe('differential fuzz: the SQL guard and SQLite agree on which tables a query reads', () => {
  it('every query the guard accepts opens only the tables the guard saw; each of its two defences alone keeps SQLite to the business tables (EXPLAIN in D1)', async () => {
    const stats = newStats()
    const result = await fc.check(defencesAgree(stats), { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true })
    expect(result.failed, result.failed ? `counterexample: ${JSON.stringify(result.counterexample)}` : '').toBe(false)
    // not vacuous: many queries got through the guard and were compiled by SQLite
    expect(stats.generated).toBe(NUM_RUNS)
    expect(stats.agreed).toBeGreaterThanOrEqual(40)
  }, TIMEOUT_MS)

  it('finds a disagreement on its own with the fix switched off', async () => {
    const stats = newStats()
    const result = await fc.check(differential(stats, 'strict', BEFORE_THE_FIX), { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true })
    expect(result.failed).toBe(true)
    const [sql] = result.counterexample ?? ['']
    expect(sql).toMatch(/[^\x00-\x7f]/)
  }, TIMEOUT_MS)

  it('finds the issue #13 bypass (a read of a protected table) on its own with the fix switched off', async () => {
    const stats = newStats()
    const result = await fc.check(differential(stats, 'business', BEFORE_THE_FIX), { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true })
    expect(result.failed).toBe(true)
    const [sql] = result.counterexample ?? ['']
    // the counterexample is a real read outside the business tables, hidden by a non-ASCII character
    expect(sql).toMatch(/[^\x00-\x7f]/)
    const guard = guardQuery(sql, { allowedTables: BUSINESS_TABLES, maxRows: 50 }, BEFORE_THE_FIX)
    expect(guard.ok).toBe(true)
    if (!guard.ok) return
    const gate = await explainGate(env.DB, guard.sql, BUSINESS_TABLES)
    expect(gate).toMatchObject({ ok: false, message: expect.stringContaining('not queryable') })
    // and the real guard refuses it, by each of its two defences alone
    expect(guardQuery(sql, { allowedTables: BUSINESS_TABLES, maxRows: 50 })).toMatchObject({ ok: false, code: 'invalid_character' })
    expect(guardQuery(sql, { allowedTables: BUSINESS_TABLES, maxRows: 50 }, { allowNonAscii: true })).toMatchObject({ ok: false, code: 'identifier_not_in_scope' })
  }, TIMEOUT_MS)
})
