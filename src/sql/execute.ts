/**
 * Capped, read-only execution of a guarded query over D1.
 *
 *   1. guardQuery (src/sql/guard.ts) parses and checks the query and wraps it
 *      as `SELECT * FROM (<q>) LIMIT maxRows + 1`;
 *   2. a probe, the same statement with LIMIT 0, read with
 *      `raw({ columnNames: true })`, tells the output column names (D1
 *      returns them even for zero rows, as the first element). More than
 *      MAX_COLUMNS columns is refused (`too_many_columns`);
 *   3. the real statement caps every value INSIDE SQLite, so the Worker never
 *      receives, parses or holds a big value (a nested hex() or a doubling
 *      recursive CTE can make 1 MiB per row; 500 of them would kill the
 *      isolate). It reads, from the inside out:
 *        L1  the guard's statement, at most maxRows + 1 rows, as a CTE whose
 *            column list renames its columns BY POSITION to c0..cN-1. (Never
 *            by name: SQLite names duplicate columns `id`, `id:1`, `id:2`,
 *            and past a few duplicates `id:<random number>`, different at
 *            every compile, so the probe's names cannot be referred to);
 *        L2  each column as a text cut to MAX_VALUE_BYTES bytes of UTF-8
 *            (on a character boundary, unless the text is not valid UTF-8)
 *            ending in TEXT_MARKER ('…'), or a blob
 *            cut to MAX_VALUE_BYTES bytes (no marker possible), else
 *            unchanged: integers, reals and NULL keep their type; plus the
 *            number of values cut in the row. Sizes are measured as blobs
 *            (length() of a text stops at a NUL). Its LIMIT ... OFFSET 0
 *            keeps SQLite from flattening L1 into it or it into L3, so the
 *            query's expressions are computed once per row and only cut
 *            values reach L3's window buffer;
 *        L3  a lower bound of each row's JSON size and its running total
 *            (a ROWS window: no sort, the order of L1 is kept);
 *        L4  only the rows that start within maxBytes: the rows the byte cap
 *            below keeps, plus the one that tells it to stop. So at most
 *            about maxBytes + one row (MAX_COLUMNS values of at most
 *            MAX_VALUE_BYTES) ever cross from D1 to the Worker, instead of
 *            (maxRows + 1) x MAX_COLUMNS x MAX_VALUE_BYTES (130 MB);
 *      The Worker then keys each row by the probe's names (duplicates come
 *      back as `id`, `id:1`, as before);
 *   4. defence in depth: if D1's result meta says anything was written
 *      (changed_db, rows_written, changes), the rows are withheld and a
 *      `write_incident` is returned for the caller to audit and alert on.
 *      The guard should make this impossible; this is the tripwire if it
 *      ever is not. (The LIMIT 0 probe runs first and raw() reports no meta;
 *      it is the same statement, so a write would show again in step 3);
 *   5. the rows are capped in the Worker too, exactly: at most maxRows
 *      (truncated: 'rows' when the extra row came back), then at most
 *      maxBytes of JSON, dropping rows from the end (truncated: 'bytes',
 *      which wins when both apply). `valuesTruncated` counts the values of
 *      the returned rows that step 3 cut; it is independent of `truncated`.
 *
 * ERRORS. Only errors the query's author can act on become
 * `{ kind: 'refused', code: 'sql_error' }`, with one clean line (D1's
 * "D1_ERROR:" prefixes and SQLITE_* result codes stripped, offsets
 * translated back to the caller's query): SQLite's compile errors (no such
 * column/table/function, syntax error, ambiguous column name, misuse of
 * aggregate, too many terms in compound SELECT, ...) raised by the probe,
 * and its run-time errors (string or blob too big, integer overflow,
 * malformed JSON, ...) from either statement. Everything else is rethrown
 * for the tool boundary to report as an internal error and alert on: D1
 * outages and overload, lost connections, storage resets, SQLITE_BUSY /
 * IOERR / NOMEM / INTERRUPT / ..., and a compile error in the real
 * statement (then the wrapper here is at fault, not the query). Timeouts are
 * the caller's concern (it races this with its signal).
 */
import { explainGate, prepareBound } from './explain-gate.ts'
import { overBudgetMessage, pricePlan, readTableStats, type PlanRow } from './plan-budget.ts'
import { filterColumns, missingClaimText, scopedUse, scopeValues, type RowFilter } from '../policy/row-scope.ts'
import type { GuardCode, GuardResult } from './guard.ts'

/**
 * The guard (and sql-parser-cst behind it) is loaded on the first
 * execute_query call, once per isolate, so Worker startup does not pay for
 * building the parser. Memoized: concurrent first calls share one import.
 */
let guardModule: Promise<typeof import('./guard.ts')> | undefined
function loadGuard(): Promise<typeof import('./guard.ts')> {
  guardModule ??= import('./guard.ts')
  return guardModule
}

export interface ExecuteOptions {
  allowedTables: readonly string[]
  maxRows: number
  maxBytes: number
  /** Most rows the statement may visit, priced from its plan before it runs (plan-budget.ts). */
  maxVisitedRows: number
  /** The caller's row scope (policy/row-scope.ts): scoped tables are read through their filter. */
  rowFilter?: RowFilter
}

/** Codes of `{ kind: 'refused' }` results: the guard's, and the two decided here. */
export type ExecuteRefusalCode = GuardCode | 'too_many_columns' | 'sql_error' | 'explain_refused' | 'over_budget' | 'claim_missing'

export type ExecuteResult =
  | {
      ok: true
      /** output column names, in order (also for an empty result) */
      columns: string[]
      rows: Record<string, unknown>[]
      rowCount: number
      truncated: false | 'rows' | 'bytes'
      /** values in `rows` cut to MAX_VALUE_BYTES (texts end with TEXT_MARKER) */
      valuesTruncated: number
      bytes: number
    }
  // `(string & {})`: any string still fits, as before, while editors suggest the known codes
  | { ok: false; kind: 'refused'; code: ExecuteRefusalCode | (string & {}); message: string }
  | { ok: false; kind: 'write_incident'; meta: { changed_db: boolean; rows_written: number; changes: number } }

/** Most output columns a query may have. */
export const MAX_COLUMNS = 64
/** Longest text (UTF-8 bytes, marker included) or blob (bytes) value returned. */
export const MAX_VALUE_BYTES = 4096
/** Appended to a text value that was cut; 3 bytes of UTF-8. */
export const TEXT_MARKER = '…'

/** Longest SQL error message handed back. */
const MAX_ERROR_LENGTH = 300

export async function executeReadOnly(
  db: Pick<D1Database, 'prepare'>,
  query: string,
  opts: ExecuteOptions,
): Promise<ExecuteResult> {
  if (!Number.isInteger(opts.maxBytes) || opts.maxBytes < 2) {
    throw new RangeError('executeReadOnly: maxBytes must be an integer >= 2')
  }
  const checked = await checkBeforeRun(db, query, opts)
  if (!checked.ok) return checked
  const { guard, params } = checked

  // The output columns: the guard's statement with LIMIT 0 (nothing runs).
  const probe = guard.sql.replace(/ LIMIT \d+$/, ' LIMIT 0')
  let columns: string[]
  try {
    const [names] = await prepareBound(db, probe, params).raw<unknown[]>({ columnNames: true })
    columns = Array.isArray(names) ? names.map(String) : []
  } catch (err) {
    const message = sqlErrorMessage(err, probe, query)
    if (message === undefined) throw err
    return { ok: false, kind: 'refused', code: 'sql_error', message }
  }
  if (columns.length === 0) throw new Error('executeReadOnly: D1 reported no output columns for a SELECT')
  if (columns.length > MAX_COLUMNS) {
    return {
      ok: false,
      kind: 'refused',
      code: 'too_many_columns',
      message: `the query returns ${columns.length} columns; at most ${MAX_COLUMNS} are allowed: select only the columns you need`,
    }
  }
  if (new Set(columns).size !== columns.length) {
    // SQLite makes a subquery's column names unique (`id`, `id:1`); if it
    // ever did not, the rows could not have one key per column.
    throw new Error('executeReadOnly: D1 reported duplicate output column names')
  }

  const sql = cappedStatement(guard.sql, columns, opts)
  let result: D1Result<Record<string, unknown>>
  try {
    result = await prepareBound(db, sql, params).all<Record<string, unknown>>()
  } catch (err) {
    const message = sqlErrorMessage(err, sql, query, 'run')
    if (message === undefined) throw err
    return { ok: false, kind: 'refused', code: 'sql_error', message }
  }

  const meta = result.meta
  const changed = meta.changed_db === true
  const rowsWritten = Number(meta.rows_written) || 0
  const changes = Number(meta.changes) || 0
  if (changed || rowsWritten > 0 || changes > 0) {
    return { ok: false, kind: 'write_incident', meta: { changed_db: changed, rows_written: rowsWritten, changes } }
  }

  const all = result.results
  let truncated: false | 'rows' | 'bytes' = all.length > opts.maxRows ? 'rows' : false
  const candidates = truncated ? all.slice(0, opts.maxRows) : all

  // JSON of the kept rows: "[" + rows joined by "," + "]"
  const rows: Record<string, unknown>[] = []
  let bytes = 2
  let valuesTruncated = 0
  for (const raw of candidates) {
    const row = Object.fromEntries(columns.map((name, i) => [name, raw[`c${i}`]]))
    const size = utf8Length(JSON.stringify(row)) + (rows.length > 0 ? 1 : 0)
    if (bytes + size > opts.maxBytes) {
      truncated = 'bytes'
      break
    }
    bytes += size
    rows.push(row)
    valuesTruncated += Number(raw.cut) || 0
  }
  return { ok: true, columns, rows, rowCount: rows.length, truncated, valuesTruncated, bytes }
}

/** What passed every check before the query runs: the guard's statement and facts, and the values its parameters are bound to. */
type Checked = { ok: true; guard: Extract<GuardResult, { ok: true }>; params: (string | number)[] }
type Refusal = Extract<ExecuteResult, { kind: 'refused' }>

/**
 * Everything execute_query checks before the statement runs: the guard, the
 * EXPLAIN gate and the work budget. Refusals the caller can act on come
 * back as such; operational errors are thrown.
 */
export async function checkBeforeRun(db: Pick<D1Database, 'prepare'>, query: string, opts: ExecuteOptions): Promise<Checked | Refusal> {
  const { guardQuery } = await loadGuard()
  const filter = opts.rowFilter ?? new Map()
  const guard = guardQuery(query, { allowedTables: opts.allowedTables, maxRows: opts.maxRows, rowScope: filterColumns(filter) })
  if (!guard.ok) return { ok: false, kind: 'refused', code: guard.code, message: guard.message }
  const scope = scopeValues(filter, guard.scoped)
  if (!scope.ok) {
    return { ok: false, kind: 'refused', code: 'claim_missing', message: missingClaimText(scope.claim, scopedUse(scope.table)) }
  }
  const params = scope.values

  // Second, independent gate (src/sql/explain-gate.ts): SQLite's own plan
  // must open only the allowed tables' b-trees. Beside it, the work budget
  // (src/sql/plan-budget.ts) prices the rows the plan visits. Both fail
  // closed: a query error is reported as such, any other failure refuses the
  // query or is an internal error; nothing runs before both pass.
  const explained = `EXPLAIN QUERY PLAN ${guard.sql}`
  const [gate, planned] = await Promise.all([
    explainGate(db, guard.sql, opts.allowedTables, params),
    Promise.all([prepareBound(db, explained, params).all<PlanRow>(), readTableStats(db, guard.tables)]).then(
      ([plan, stats]) => ({ ok: true as const, plan: plan.results, stats }),
      (cause: unknown) => ({ ok: false as const, cause }),
    ),
  ])
  if (!gate.ok) {
    const message = gate.cause === undefined ? undefined : sqlErrorMessage(gate.cause, `EXPLAIN ${guard.sql}`, query)
    if (message !== undefined) return { ok: false, kind: 'refused', code: 'sql_error', message }
    // D1 outages, overload, ...: still no rows, reported as an internal error
    if (gate.cause !== undefined) throw gate.cause
    return { ok: false, kind: 'refused', code: 'explain_refused', message: gate.message }
  }
  if (!planned.ok) {
    const message = sqlErrorMessage(planned.cause, explained, query)
    if (message !== undefined) return { ok: false, kind: 'refused', code: 'sql_error', message }
    throw planned.cause
  }
  const price = pricePlan(planned.plan.map((r) => ({ id: Number(r.id), parent: Number(r.parent), detail: String(r.detail) })), planned.stats, guard)
  if (!price.ok) return { ok: false, kind: 'refused', code: 'explain_refused', message: `SQLite's plan for the query could not be priced (${price.message}); simplify the query` }
  if (price.rows > opts.maxVisitedRows) {
    return { ok: false, kind: 'refused', code: 'over_budget', message: overBudgetMessage(price.rows, opts.maxVisitedRows, price.loops) }
  }
  return { ok: true, guard, params }
}

/**
 * The guard's statement (L1) wrapped as described in the header: values cut
 * (L2), a running lower bound of the JSON size (L3), rows past maxBytes
 * dropped (L4). Its own columns are c0..cN-1 and cut. About 880 characters
 * per column: ~57 KB at MAX_COLUMNS with a 1000-character query, within
 * D1's 100 KB statement limit.
 */
function cappedStatement(inner: string, columns: readonly string[], opts: ExecuteOptions): string {
  const n = opts.maxRows + 1
  const max = MAX_VALUE_BYTES
  const keep = max - utf8Length(TEXT_MARKER)
  const bytesOf = (v: string) => `length(CAST(${v} AS BLOB))`
  // A text cut by characters to at most `keep` bytes, whatever its script:
  // `keep` characters if they are 1 byte each, else keep/2 (up to 2 bytes
  // each), else keep/4 (up to 4). Invalid UTF-8 can make one "character" of
  // any length for substr() (a lead byte, then any run of continuation
  // bytes): then the bytes are cut. (length() of a text stops at a NUL, so
  // sizes are measured as blobs.)
  const chars = [keep, Math.floor(keep / 2), Math.floor(keep / 4)]
  const cutText = (v: string) =>
    `CASE ${chars.map((k) => `WHEN ${bytesOf(`substr(${v}, 1, ${k})`)} <= ${keep} THEN substr(${v}, 1, ${k})`).join(' ')} ` +
    `ELSE CAST(substr(CAST(${v} AS BLOB), 1, ${keep}) AS TEXT) END || '${TEXT_MARKER}'`
  const big = (v: string) => `typeof(${v}) IN ('text', 'blob') AND ${bytesOf(v)} > ${max}`

  const capped = columns.map((_, i) => {
    const v = `q.c${i}`
    return (
      `CASE WHEN typeof(${v}) = 'text' AND ${bytesOf(v)} > ${max} THEN ${cutText(v)} ` +
      `WHEN typeof(${v}) = 'blob' AND length(${v}) > ${max} THEN substr(${v}, 1, ${max}) ` +
      `ELSE ${v} END AS "c${i}"`
    )
  })
  const cut = columns.map((_, i) => `(${big(`q.c${i}`)})`).join(' + ')
  const own = [...columns.map((_, i) => `"c${i}"`), '"cut"'].join(', ')

  // Lower bound of JSON.stringify(row): the keys exactly, each value at least
  // its UTF-8 bytes + 2 quotes (text), a number per byte (blob: D1 returns
  // an array of numbers), 4 (null) or 1 (number).
  const keys = 2 + columns.reduce((sum, name) => sum + utf8Length(JSON.stringify(name)) + 1, 0) + columns.length - 1
  const valueSize = (v: string) => `CASE typeof(${v}) WHEN 'text' THEN ${bytesOf(v)} + 2 WHEN 'blob' THEN length(${v}) WHEN 'null' THEN 4 ELSE 1 END`
  const size = [String(keys), ...columns.map((_, i) => valueSize(`v."c${i}"`))].join(' + ')

  const l1 = `q(${columns.map((_, i) => `c${i}`).join(', ')}) AS (${inner})`
  const l2 = `SELECT ${capped.join(', ')}, ${cut} AS "cut" FROM q LIMIT ${n} OFFSET 0`
  const l3 = `SELECT ${own}, ${size} AS "size", sum(${size}) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS "run" FROM (${l2}) AS v`
  return `WITH ${l1} SELECT ${own} FROM (${l3}) WHERE "run" - "size" <= ${opts.maxBytes}`
}

/**
 * SQLite's compile errors: the query's text is at fault and the model can
 * fix it. Matched on the cleaned message (no D1_ERROR prefix, no SQLITE_
 * code), from its start.
 */
const COMPILE_ERRORS: readonly RegExp[] = [
  /^no such (?:column|table|function|collation sequence|window|index)\b/,
  /^near ".*": syntax error/,
  /^(?:syntax error|incomplete input|unrecognized token)\b/,
  /^ambiguous column name\b/,
  /^misuse of (?:aliased )?(?:aggregate|window function)\b/,
  /^wrong number of arguments to function\b/,
  /^too many (?:terms in compound SELECT|columns in result set|columns on|FROM clause terms|arguments on function|SQL variables|references to)\b/,
  /^(?:\d+(?:st|nd|rd|th) )?(?:ORDER|GROUP) BY term\b/,
  /^aggregate functions are not allowed in the GROUP BY clause/,
  /^a GROUP BY clause is required before HAVING/,
  /^HAVING clause on a non-aggregate query/,
  /^SELECTs to the left and right of \w+ do not have the same number of result columns/,
  /^sub-select returns \d+ columns? - expected \d+/,
  /^row value misused/,
  /^all VALUES must have the same number of terms/,
  /^IN\(\.\.\.\) element has \d+ terms?/,
  /^(?:circular reference|multiple references to recursive table|duplicate WITH table name)\b/,
  /^(?:recursive aggregate queries not supported|multiple recursive references)/,
  /^table .+ has \d+ values? for \d+ columns?/,
  /^(?:window function calls may not be nested|cannot use window functions in recursive queries|unsupported frame specification)/,
  /^FILTER clause may only be used with aggregate window functions/,
  /^RANGE with offset PRECEDING\/FOLLOWING requires one ORDER BY expression/,
  /^ON clause references tables to its right/,
  /^cannot join using column\b/,
  /^a NATURAL join may not have an ON or USING clause/,
  /^DISTINCT aggregates must have exactly one argument/,
  /^(?:not authorized|access to .+ is prohibited|unsafe use of)\b/,
  /^(?:Expression tree is too large|parser stack overflow|hex literal too big|at most \d+ tables in a join|no query solution)/,
  /^second argument to likelihood\(\) must be a constant/,
]

/** SQLite's run-time errors: the query's data or arguments are at fault. */
const RUNTIME_ERRORS: readonly RegExp[] = [
  /^(?:string or blob too big|integer overflow|division by zero|datatype mismatch)\b/,
  /^(?:malformed JSON|bad JSON path|JSON path error|JSON cannot hold BLOB values)\b/,
  /^json_\w+\(\) /,
  /^(?:LIKE or GLOB pattern too complex|ESCAPE expression must be a single character)/,
  /^(?:argument of ntile must be a positive integer|second argument to nth_value must be a positive integer)/,
  /^frame (?:starting|ending) offset must be a non-negative (?:integer|number)/,
]

/** Result codes that can come with a query's own error; any other is operational. */
const QUERY_RESULT_CODES: ReadonlySet<string> = new Set(['SQLITE_ERROR', 'SQLITE_TOOBIG', 'SQLITE_AUTH', 'SQLITE_MISMATCH', 'SQLITE_RANGE'])

/**
 * One useful line from a D1/SQLite error, or undefined when the error is not
 * the query's own (then it is not ours to describe, and the caller rethrows
 * it). `executed` is the statement D1 ran: for the `probe` phase it has the
 * guard's layout (`SELECT * FROM (\n<body>\n) ...`) and offsets are
 * translated to `original`; in the `run` phase (the capped statement) only
 * run-time errors are the query's, and offsets are dropped.
 */
export function sqlErrorMessage(err: unknown, executed: string, original: string, phase: 'probe' | 'run' = 'probe'): string | undefined {
  const raw = err instanceof Error ? err.message : typeof err === 'string' ? err : ''
  const first = raw.split(/\r?\n/)[0] ?? ''
  if (!/\bD1_[A-Z_]*ERROR\b|\bSQLITE_[A-Z]+\b/.test(first)) return undefined
  for (const code of first.match(/\bSQLITE_[A-Z_]+\b/g) ?? []) {
    if (!QUERY_RESULT_CODES.has(code)) return undefined
  }
  let message = first
    .replace(/^(?:\s*(?:Error|D1_[A-Z_]+)\s*:\s*)+/, '')
    .replace(/(?::\s*SQLITE_[A-Z_]+(?:\s*\[?\w*\]?)?)+\s*$/, '')
    .trim()
  const known = phase === 'run' ? RUNTIME_ERRORS : [...COMPILE_ERRORS, ...RUNTIME_ERRORS]
  if (!known.some((re) => re.test(message))) return undefined
  if (phase === 'run') {
    message = message.replace(/\s*\bat offset \d+/, '')
  } else {
    // SQLite reports offsets into the statement it ran, the wrapped one:
    // translate them to the caller's text, or drop them.
    const bodyStart = executed.indexOf('\n') + 1
    const body = executed.slice(bodyStart, executed.lastIndexOf('\n)'))
    const start = original.indexOf(body)
    message = message.replace(/\s*\bat offset (\d+)/, (_, n: string) => {
      const offset = Number(n) - bodyStart + start
      return start >= 0 && offset >= start && offset <= start + body.length ? ` at offset ${offset}` : ''
    })
  }
  message = message.replace(/\s+/g, ' ').trim()
  if (message === '') return undefined
  return message.length > MAX_ERROR_LENGTH ? `${message.slice(0, MAX_ERROR_LENGTH - 3)}...` : message
}

/** UTF-8 byte length of a string without allocating (lone surrogates count as U+FFFD). */
function utf8Length(text: string): number {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) bytes += 1
    else if (code < 0x800) bytes += 2
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4
        i++
      } else {
        bytes += 3
      }
    } else bytes += 3
  }
  return bytes
}
