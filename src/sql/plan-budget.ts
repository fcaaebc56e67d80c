/**
 * The work budget of execute_query: before a statement runs, price the rows
 * it would visit from SQLite's own plan and the tables' sizes, and refuse it
 * above the policy's budget. The SQL guard bounds what a query may touch;
 * this bounds how much of it: a product of scans (`orders a, orders b,
 * orders c, orders d`), a scan under a scan, a recursive CTE joined to tables.
 *
 * INPUTS, all read by the server, never from the caller's text:
 *   - `EXPLAIN QUERY PLAN <statement>`: the loops SQLite will run, as a tree
 *     (id, parent, detail). Nothing runs; compiling is cheap.
 *   - rows per table, fresh at every call: `max(rowid)` of each referenced
 *     table (an index seek, O(log n); an upper bound of the row count), or
 *     `count(*)` for a WITHOUT ROWID table;
 *   - rows per index key from `sqlite_stat1` (ANALYZE; `PRAGMA optimize`
 *     keeps it current: `npm run db:init`, the cron and the Deploy steps run
 *     it), scaled up by the table's growth since, cached per isolate for
 *     STATS_TTL_MS. The average rows per key, as SQLite's own planner uses.
 *
 * PRICE (an upper bound of rows visited, up to the per-key averages):
 *   - a loop visits, per iteration of the loops outside it: SCAN = the
 *     table's rows; SEARCH by rowid = 1; SEARCH on an index with k leading
 *     equality terms = the index's rows per k-column key (without statistics,
 *     the table's rows: priced as a scan, never guessed low); a range only =
 *     the table's rows; an automatic index = the table's rows per lookup,
 *     plus the table's rows once to build it; MULTI-INDEX OR = the sum of
 *     its branches. Nested loops multiply; every level's rows are visited;
 *   - an IN list repeats equality searches: `IN (SELECT ...)` those of its
 *     scope once per row of the list, a literal `IN (a, b, ...)` (the guard
 *     reports the product of their lengths) every equality search once per
 *     value, but never past the whole table (each distinct value is looked
 *     up once);
 *   - a correlated subquery runs once per row of the loops before it; an
 *     uncorrelated one, a materialized view or co-routine once; compound
 *     members add up;
 *   - a recursive CTE yields at most its LIMIT (plus OFFSET), as the guard
 *     checked (`recursiveRows`); each step runs once per row;
 *   - a scanned name that is no table SQLite names by its index, or no
 *     subquery of this plan (an alias, a CTE read under another name), is
 *     priced as the largest of them all: a name in the plan is never trusted
 *     to mean a small table.
 *   The guard refuses table aliases and CTE names that are not plain
 *   identifiers, so a name cannot forge the plan text this module reads.
 * FAIL CLOSED: a plan line this module does not know or an empty plan
 * refuses the query; a failed read is an error (no rows, nothing priced).
 *
 * This module does not import the SQL parser.
 */
/** How long an isolate trusts its copy of sqlite_stat1 and the index list. */
const STATS_TTL_MS = 60_000

export interface PlanRow {
  id: number
  parent: number
  detail: string
}

interface IndexInfo {
  table: string
  /** rows per key of the first 1, 2, ... columns (sqlite_stat1), if analyzed */
  perKey: number[] | undefined
  /** rows in the table when it was analyzed */
  analyzedRows: number | undefined
}

export interface TableStats {
  /** rows per business table (lower-case name): an upper bound, fresh */
  rows: ReadonlyMap<string, number>
  /** every index of the business tables, by lower-case name */
  indexes: ReadonlyMap<string, IndexInfo>
}

type PlanPrice =
  | { ok: true; rows: number }
  | { ok: false; reason: 'unreadable'; message: string }

/** One factor of the price, for the refusal message. */
interface Loop {
  what: string
  rows: number
}

class Unreadable extends Error {}

interface Scope {
  work: number
  /** rows the scope yields (an upper bound) */
  rows: number
}

/** What the SQL guard learnt from the query's text (GuardResult). */
interface QueryNames {
  /** each recursive CTE's most rows, by lower-case name */
  recursiveRows: ReadonlyMap<string, number>
  /** the tables or CTEs each table alias stands for */
  aliases: ReadonlyMap<string, ReadonlySet<string>>
  /** product of the lengths of the query's literal IN (...) lists */
  inListProduct: number
}

interface Walk {
  children: Map<number, PlanRow[]>
  stats: TableStats
  recursiveRows: ReadonlyMap<string, number>
  aliases: ReadonlyMap<string, ReadonlySet<string>>
  inListProduct: number
  /** output rows of each co-routine / materialized subquery, by lower-case name */
  outputs: Map<string, number>
  /** the largest table or subquery output: the price of a name that resolves to neither */
  largest: number
  /** the costliest chain of loops seen, for the message */
  loops: Loop[]
  loopsWork: number
  /** names of the recursive CTEs being priced, whose own reads are one queued row */
  recursing: string[]
}

const LOOP = /^(SCAN|SEARCH) (\S+)(?: USING (COVERING INDEX|INDEX|AUTOMATIC COVERING INDEX|AUTOMATIC PARTIAL COVERING INDEX|INTEGER PRIMARY KEY|PRIMARY KEY)(?: ([^\s(]\S*))?)?(?: \((.*)\))?(?: LEFT-JOIN)?$/
const CONSTANT_ROWS = /^SCAN (?:CONSTANT ROW|(\d+) CONSTANT ROWS|(\d+)-ROW VALUES CLAUSE)$/
/** The unmatched rows of a RIGHT JOIN: its loops run once more, after the join. */
const RIGHT_JOIN = /^RIGHT-JOIN \S+$/
const SUBPLAN = /^(CO-ROUTINE|MATERIALIZE) (\S+)$/
const SUBQUERY = /^(CORRELATED )?(SCALAR|LIST) SUBQUERY \d+$/
const COMPOUND = /^(COMPOUND QUERY|MERGE \((?:UNION ALL|UNION|EXCEPT|INTERSECT)\))$/
const MEMBER = /^(LEFT-MOST SUBQUERY|UNION ALL|(?:UNION|EXCEPT|INTERSECT) USING TEMP B-TREE|LEFT|RIGHT)$/
const IGNORED = /^(USE TEMP B-TREE FOR (?:ORDER BY|GROUP BY|DISTINCT|(?:RIGHT PART OF|LAST \d+ TERMS? OF) ORDER BY)|CREATE BLOOM FILTER|BLOOM FILTER ON \S+ \(.*\)|REUSE (?:LIST )?SUBQUERY \d+|USING (?:INDEX \S+|ROWID SEARCH ON TABLE \S+) FOR IN-OPERATOR)$/

/**
 * Rows the plan visits at most. Pure: `plan` is EXPLAIN QUERY PLAN's rows,
 * `names` what the guard read from the query.
 */
export function pricePlan(plan: readonly PlanRow[], stats: TableStats, names: QueryNames): PlanPrice & { loops?: Loop[] } {
  const { recursiveRows, aliases, inListProduct } = names
  if (plan.length === 0) return { ok: false, reason: 'unreadable', message: 'SQLite returned no query plan' }
  const children = new Map<number, PlanRow[]>()
  for (const row of plan) {
    const list = children.get(row.parent)
    if (list) list.push(row)
    else children.set(row.parent, [row])
  }
  const recursiveMax = Math.max(0, ...recursiveRows.values())
  const walk: Walk = {
    children,
    stats,
    recursiveRows,
    aliases,
    inListProduct,
    outputs: new Map(),
    largest: Math.max(1, recursiveMax, ...stats.rows.values()),
    loops: [],
    loopsWork: 0,
    recursing: [],
  }
  try {
    const top = priceScope(children.get(0) ?? [], walk)
    return { ok: true, rows: top.work, loops: walk.loops }
  } catch (error) {
    if (error instanceof Unreadable) return { ok: false, reason: 'unreadable', message: error.message }
    throw error
  }
}

function priceScope(rows: readonly PlanRow[], walk: Walk): Scope {
  let work = 0
  // Pass 1: what runs once and what later lines refer to (subqueries
  // SQLite lists after the loops that use them).
  // how often an equality search of this scope may repeat: once per value of
  // each IN list that may feed it (literal lists anywhere, subquery lists here)
  let listRows = walk.inListProduct
  for (const row of rows) {
    const sub = SUBPLAN.exec(row.detail)
    if (sub) {
      const name = sub[2]!.toLowerCase()
      const priced = priceSubplan(row, name, walk)
      work += priced.work
      walk.outputs.set(name, Math.max(walk.outputs.get(name) ?? 0, priced.rows))
      walk.largest = Math.max(walk.largest, priced.rows)
      continue
    }
    const subquery = SUBQUERY.exec(row.detail)
    if (subquery && subquery[1] === undefined) {
      const priced = priceScope(walk.children.get(row.id) ?? [], walk)
      work += priced.work
      if (subquery[2] === 'LIST') listRows *= Math.max(1, priced.rows)
    }
  }
  // Pass 2: the loops, nested in order.
  let product = 1
  let outputRows: number | undefined
  const chain: Loop[] = []
  for (const row of rows) {
    const detail = row.detail
    if (SUBPLAN.test(detail) || IGNORED.test(detail)) {
      if (detail.startsWith('USE TEMP B-TREE')) work += product
      continue
    }
    const subquery = SUBQUERY.exec(detail)
    if (subquery) {
      if (subquery[1] !== undefined) work += product * priceScope(walk.children.get(row.id) ?? [], walk).work
      continue
    }
    if (RIGHT_JOIN.test(detail)) {
      work += product * priceScope(walk.children.get(row.id) ?? [], walk).work
      continue
    }
    if (COMPOUND.test(detail)) {
      let sum = 0
      for (const member of walk.children.get(row.id) ?? []) {
        if (!MEMBER.test(member.detail)) throw new Unreadable(`unknown compound member in the query plan: ${member.detail}`)
        const priced = priceScope(walk.children.get(member.id) ?? [], walk)
        work += priced.work
        sum += priced.rows
      }
      outputRows = (outputRows ?? 0) + sum
      continue
    }
    const loop = priceLoop(row, walk, listRows)
    product *= loop.rows
    work += product + loop.once
    chain.push({ what: loop.what, rows: loop.rows })
  }
  if (chain.length > 0 && product > walk.loopsWork) {
    walk.loopsWork = product
    walk.loops = chain
  }
  return { work, rows: outputRows ?? product }
}

function priceSubplan(row: PlanRow, name: string, walk: Walk): Scope {
  const parts = walk.children.get(row.id) ?? []
  const setup = parts.find((p) => p.detail === 'SETUP')
  const step = parts.find((p) => p.detail === 'RECURSIVE STEP')
  if (setup === undefined && step === undefined) return priceScope(parts, walk)
  if (setup === undefined || step === undefined || parts.length !== 2) throw new Unreadable(`unknown recursive CTE layout in the query plan for ${name}`)
  const limit = walk.recursiveRows.get(name)
  if (limit === undefined) throw new Unreadable(`the query plan has a recursive CTE ${name} the guard did not bound`)
  const first = priceScope(walk.children.get(setup.id) ?? [], walk)
  walk.recursing.push(name)
  const each = priceScope(walk.children.get(step.id) ?? [], walk)
  walk.recursing.pop()
  return { work: first.work + limit * each.work, rows: limit }
}

/** Rows one loop visits per iteration of the loops outside it, and its one-off cost. */
function priceLoop(row: PlanRow, walk: Walk, listRows: number): { rows: number; once: number; what: string } {
  const detail = row.detail
  const constant = CONSTANT_ROWS.exec(detail)
  if (constant) {
    const rows = Number(constant[1] ?? constant[2] ?? 1)
    return { rows, once: 0, what: `${rows} constant row${rows === 1 ? '' : 's'}` }
  }
  if (detail === 'MULTI-INDEX OR') {
    let rows = 0
    for (const branch of walk.children.get(row.id) ?? []) {
      if (!/^INDEX \d+$/.test(branch.detail)) throw new Unreadable(`unknown MULTI-INDEX OR branch in the query plan: ${branch.detail}`)
      for (const search of walk.children.get(branch.id) ?? []) rows += priceLoop(search, walk, listRows).rows
    }
    return { rows, once: 0, what: 'an OR over indexes' }
  }
  const m = LOOP.exec(detail)
  if (!m) throw new Unreadable(`unknown step in the query plan: ${detail}`)
  const [, verb, rawName, using, indexName, terms] = m
  const name = rawName!.toLowerCase()
  const index = indexName === undefined ? undefined : walk.stats.indexes.get(indexName.toLowerCase())
  const table = index?.table
  const tableRows = table !== undefined ? walk.stats.rows.get(table) ?? walk.largest : sizeOfName(name, walk)
  const label = table ?? name
  if (walk.recursing.includes(name)) return { rows: 1, once: 0, what: `the queued row of ${name}` }
  if (verb === 'SCAN') return { rows: tableRows, once: 0, what: `a scan of ${label} (${fmt(tableRows)} rows)` }
  const equalities = leadingEqualities(terms ?? '')
  const repeat = equalities > 0 ? listRows : 1
  // an IN list never makes a search visit more than the whole table (SQLite looks each distinct value up once)
  if (using === 'INTEGER PRIMARY KEY') {
    const rows = equalities > 0 ? Math.min(repeat, Math.max(1, tableRows)) : tableRows
    return { rows, once: 0, what: equalities > 0 ? `a rowid lookup in ${label}` : `a rowid range of ${label} (${fmt(rows)} rows)` }
  }
  if (using?.startsWith('AUTOMATIC')) {
    return { rows: tableRows, once: tableRows, what: `an automatic index on ${label} (${fmt(tableRows)} rows, not indexed for this join)` }
  }
  const perKey = equalities > 0 && index !== undefined ? keyRows(index, equalities, tableRows) : tableRows
  const rows = Math.min(tableRows, perKey * repeat)
  return { rows, once: 0, what: equalities > 0 ? `an index search of ${label} (${fmt(rows)} rows a lookup)` : `an index range of ${label} (${fmt(rows)} rows)` }
}

/**
 * The rows behind a name in the plan that no index identifies: the largest
 * of everything it can stand for (a subquery of this plan, the tables or
 * CTEs an alias names, the table of that name); the largest of all when it
 * is none of these.
 */
function sizeOfName(name: string, walk: Walk, seen: ReadonlySet<string> = new Set()): number {
  const sizes: number[] = []
  const output = walk.outputs.get(name)
  if (output !== undefined) sizes.push(output)
  const table = walk.stats.rows.get(name)
  if (table !== undefined) sizes.push(table)
  for (const target of walk.aliases.get(name) ?? []) {
    if (target === name || seen.has(target)) continue
    sizes.push(sizeOfName(target, walk, new Set([...seen, name])))
  }
  return sizes.length > 0 ? Math.max(...sizes) : walk.largest
}

/** Rows per key of an index's first `k` columns, scaled by the table's growth since ANALYZE. */
function keyRows(index: IndexInfo, k: number, tableRows: number): number {
  if (index.perKey === undefined || index.perKey.length === 0) return tableRows
  const avg = index.perKey[Math.min(k, index.perKey.length) - 1]!
  const growth = index.analyzedRows !== undefined && index.analyzedRows > 0 ? Math.max(1, tableRows / index.analyzedRows) : 1
  return Math.max(1, Math.ceil(avg * growth))
}

/** Leading `col=?` terms of a SEARCH's constraint list (`a=? AND b>?` has 1). */
function leadingEqualities(terms: string): number {
  let n = 0
  for (const term of terms.split(' AND ')) {
    if (!/^[^<>=!]+=\?$/.test(term.trim())) break
    n++
  }
  return n
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

const SUPERSCRIPT = '⁰¹²³⁴⁵⁶⁷⁸⁹'

/** "10⁹": the power of ten nearest to n (n >= 1). */
export function powerOfTen(n: number): string {
  const exponent = Math.max(0, Math.round(Math.log10(Math.max(1, n))))
  return `10${[...String(exponent)].map((d) => SUPERSCRIPT[Number(d)]).join('')}`
}

/** The refusal a model can act on. */
export function overBudgetMessage(rows: number, budget: number, loops: readonly Loop[] = []): string {
  const what = loops.length > 1 ? ` (${loops.slice(0, 4).map((l) => l.what).join(' × ')}${loops.length > 4 ? ' × …' : ''})` : loops.length === 1 ? ` (${loops[0]!.what})` : ''
  return `this query would visit about ${powerOfTen(rows)} rows${what}; the limit is ${powerOfTen(budget)} rows: add a join condition or a WHERE on an indexed column`
}

// ---------------------------------------------------------------------------
// Reading the inputs

interface CachedIndexes {
  at: number
  /** every index, by lower-case name */
  indexes: Map<string, IndexInfo>
  /** lower-case names of WITHOUT ROWID tables */
  withoutRowid: Set<string>
}
let cached: CachedIndexes | undefined

/** Test hook: forget the isolate's copy of the statistics. */
export function forgetStats(): void {
  cached = undefined
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`

/**
 * The sizes (fresh) and index statistics (cached) of `tables`. Throws when
 * the schema cannot be read; a database never analyzed has no per-key rows.
 */
export async function readTableStats(db: Pick<D1Database, 'prepare'>, tables: readonly string[], now = Date.now()): Promise<TableStats> {
  const names = [...new Set(tables.map((t) => t.toLowerCase()))].sort()
  if (cached === undefined || now - cached.at >= STATS_TTL_MS) cached = await readIndexes(db, now)
  const meta = cached
  const rows = new Map<string, number>()
  if (names.length > 0) {
    const columns = names.map((t, i) => `(SELECT ${meta.withoutRowid.has(t) ? 'count(*)' : 'max(rowid)'} FROM ${quote(t)}) AS t${i}`)
    const sizes = (await db.prepare(`SELECT ${columns.join(', ')}`).all<Record<string, unknown>>()).results[0]
    names.forEach((t, i) => rows.set(t, Math.max(0, Number(sizes?.[`t${i}`]) || 0)))
  }
  return { rows, indexes: meta.indexes }
}

/** Every index (with its sqlite_stat1 row, if analyzed) and the WITHOUT ROWID tables. */
async function readIndexes(db: Pick<D1Database, 'prepare'>, now: number): Promise<CachedIndexes> {
  const schema = await db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE type IN ('table', 'index')").all<{ type: string; name: string; tbl_name: string; sql: string | null }>()
  const indexes = new Map<string, IndexInfo>()
  const withoutRowid = new Set<string>()
  let analyzed = false
  for (const r of schema.results) {
    const name = String(r.name).toLowerCase()
    const table = String(r.tbl_name).toLowerCase()
    if (r.type === 'table' && name === 'sqlite_stat1') analyzed = true
    if (r.type === 'table' && /\bWITHOUT\s+ROWID\b/i.test(r.sql ?? '')) withoutRowid.add(table)
    if (r.type === 'index') indexes.set(name, { table, perKey: undefined, analyzedRows: undefined })
  }
  if (analyzed) {
    const stats = await db.prepare('SELECT tbl, idx, stat FROM sqlite_stat1').all<{ tbl: string; idx: string | null; stat: string }>()
    for (const s of stats.results) {
      const index = s.idx === null ? undefined : indexes.get(String(s.idx).toLowerCase())
      if (index === undefined) continue
      // "nrow avg1 avg2 ...", possibly followed by flags such as "unordered"
      const numbers: number[] = []
      for (const word of String(s.stat).split(' ')) {
        if (!/^\d+$/.test(word)) break
        numbers.push(Number(word))
      }
      const [total, ...perKey] = numbers
      if (total === undefined || perKey.length === 0) continue
      index.analyzedRows = total
      index.perKey = perKey
    }
  }
  return { at: now, indexes, withoutRowid }
}
