/**
 * The read-only SQL guard behind `execute_query`.
 *
 * A pure module: SQL text and options in, a tagged result out. It knows
 * nothing of Hono, D1 or the Worker. `src/sql/execute.ts` runs what it lets
 * through.
 *
 * The query is PARSED (sql-parser-cst, SQLite dialect), never
 * pattern-matched, and the whole tree is walked: every subquery, CTE body,
 * scalar subquery, IN (SELECT ...), EXISTS, compound member, join and
 * window. Words such as "drop" or "delete" inside string literals or
 * identifiers are therefore harmless; what matters is the structure.
 *
 * ALLOWED
 *   - exactly one statement (empty statements from stray `;` are ignored)
 *     that is a SELECT: plain, `WITH ... SELECT`, compound
 *     (UNION [ALL] / INTERSECT / EXCEPT) or VALUES;
 *   - tables: the caller's `allowedTables` (ASCII case-insensitive, exactly
 *     as SQLite folds names), optionally qualified as `main.<table>`, and
 *     CTE names in scope. Table references are found wherever SQLite's
 *     grammar puts them: FROM and JOIN (also parenthesised), and after IN
 *     (`x IN t`, `x IN main.t`, and `x IN 't'`: SQLite reads a string there
 *     as a table name). A CTE name is visible in its own body (recursion), in
 *     the CTEs after it and in the query of its WITH. SQLite also resolves
 *     names forward to later CTEs of the same WITH; the guard treats such a
 *     name as a real table, which can only refuse more, never less;
 *   - functions on an allow-list (FUNCTIONS below): aggregates, window
 *     functions, string, date/time, math and JSON scalar functions;
 *   - recursive CTEs whose compound SELECT ends with `LIMIT n` (n a literal,
 *     n + OFFSET <= MAX_RECURSIVE_ROWS); SQLite stops the recursion there.
 *     A CTE is recursive when its body refers to its own name: SQLite does
 *     not need the RECURSIVE keyword, so neither does this check.
 *
 * REFUSED (stable codes, see GuardCode)
 *   - too_long           more than MAX_QUERY_LENGTH characters (the tool's own
 *                        input limit, repeated here so the guard stands alone);
 *   - invalid_character  NUL and other control characters (SQLite stops
 *                        reading at NUL, the parser does not: a differential);
 *   - empty              nothing but whitespace, comments and `;`;
 *   - parse_error        anything that is not valid SQLite as the parser sees
 *                        it, with a line/column message (this is also where
 *                        look-alike letters, `DEL/**\/ETE`, DML inside a CTE
 *                        and unterminated comments end up);
 *   - too_complex        the parser exceeded its work budget (sql-parser-cst
 *                        backtracks exponentially on some nestings such as
 *                        `WITH a AS (WITH a AS (...`; the budget caps the
 *                        guard's own CPU time) or its stack;
 *   - multiple_statements more than one statement (stacked queries, the
 *                        `SELECT 1; COMMIT; DELETE ...` escape);
 *   - not_select         any other statement kind, at the top or nested:
 *                        INSERT / REPLACE / UPSERT, UPDATE, DELETE, CREATE,
 *                        DROP, ALTER, PRAGMA, ATTACH, DETACH, VACUUM, REINDEX,
 *                        ANALYZE, EXPLAIN, BEGIN, COMMIT, ROLLBACK, SAVEPOINT,
 *                        RELEASE;
 *   - unsupported_syntax parsed, but outside the SELECT subset above: RAISE(),
 *                        typed literals, INTO, WITH inside a compound member,
 *                        CTE SEARCH/CYCLE, and other dialects' constructs;
 *                        also table aliases and CTE names that are not plain
 *                        identifiers (`AS "a b"`): they appear verbatim in the
 *                        query plan the work budget reads;
 *   - parameter_not_allowed  `?`, `?1`, `:x`, `$x`, `@x` (nothing can bind them);
 *   - table_not_allowed  a table outside `allowedTables`, and always (even if
 *                        listed) the audit tables, `sqlite_*`, FTS/R*Tree
 *                        shadow tables (`*_data`, `*_idx`, `*_content`, ...),
 *                        `search_index*`, `d1_*` and `_cf_*`; also CTEs named
 *                        like one of these;
 *   - schema_not_allowed any schema other than `main.` (`temp.x`, attached
 *                        databases);
 *   - table_function_not_allowed  table-valued functions in FROM or after IN
 *                        (`pragma_table_info(...)`, `json_each`, `json_tree`,
 *                        `generate_series`, ...). json_each/json_tree are
 *                        refused deliberately: no business column holds JSON,
 *                        and they are the usual way to reach pragma-like data;
 *   - function_not_allowed  any function not on the allow-list, notably
 *                        load_extension, randomblob, zeroblob, printf/format
 *                        (`%.*c` width bombs), char (obfuscation floods),
 *                        sqlite_* (version/compile-option probes), readfile,
 *                        writefile, fts3_tokenizer, changes/last_insert_rowid;
 *                        and any growth function (hex, quote, json_quote,
 *                        replace, concat_ws, group_concat, string_agg)
 *                        nested inside another, e.g. hex(hex(...)) or
 *                        replace(upper(replace(...))): each level multiplies
 *                        the length, an exponential bomb;
 *   - unbounded_recursion a CTE that refers to itself without a literal
 *                        LIMIT <= MAX_RECURSIVE_ROWS on its compound SELECT;
 *   - identifier_not_in_scope  a name SQLite could not resolve where the guard
 *                        saw it, so the two may not read the query alike:
 *                        a column in LIMIT / OFFSET (outside a subquery;
 *                        SQLite resolves no column there), a qualified column
 *                        `q.col` / `q.*` / `main.t.col` whose `q` is not a
 *                        table, alias or CTE in the FROM of this SELECT or an
 *                        enclosing one (in every clause: select list, WHERE,
 *                        GROUP BY, HAVING, ORDER BY, join conditions, window
 *                        definitions), and `OVER w` or `WINDOW b AS (a ...)`
 *                        naming a window this SELECT does not define (before
 *                        it). Unqualified columns are not checked: the guard
 *                        does not know the tables' columns, and SQLite refuses
 *                        an unknown one itself ("no such column").
 *
 * WHAT BOUNDS THE REST
 *   This guard is a speed bump for size, not the bound: growth can still be
 *   chained through CTE levels (`x || x`, one hex() per CTE) up to SQLite's
 *   SQLITE_MAX_LENGTH (D1: ~2 MB per value). What bounds what reaches the
 *   Worker is execute.ts, inside SQLite: at most 64 output columns,
 *   every text or blob value cut to 4 KiB, and rows past the byte budget
 *   never sent. Time is bounded by the tool's timeout; rows by the LIMIT
 *   this guard adds.
 *
 * PARSER VS SQLITE
 *   The guard is only as good as the agreement between the parser and
 *   SQLite on where strings, comments and statements end. Checked (see the
 *   attack table): a backslash is not an escape, `--` and `/* *\/` end as in
 *   SQLite and do not nest, `""`/`[]`/backticks quote identifiers, NUL is
 *   refused here, a lone CR is refused by the parser. Where they could
 *   disagree the guard refuses.
 *
 * ON SUCCESS the returned `sql` is the statement's own text (from the parse
 * tree's range, so comments and `;` around it are gone) wrapped as
 *   SELECT * FROM (\n<statement>\n) LIMIT <maxRows + 1>
 * so the caller sees at most maxRows + 1 rows and can tell truncation.
 * SQLite accepts WITH, compound selects, VALUES and ORDER BY inside a
 * subquery in FROM, and keeps the inner ORDER BY for the outer scan.
 */
import { FormattedSyntaxError, parse } from 'sql-parser-cst'
import { powerOfTen } from './plan-budget.ts'
import { isProtectedTable } from './protected-tables.ts'
import { scopedSource } from '../policy/row-scope.ts'
import type { Node, Program } from 'sql-parser-cst'

export interface GuardOptions {
  /** The tables the statement may read, or 'any': every table that is not protected (declared tools, written by the deployer). */
  allowedTables: readonly string[] | 'any'
  maxRows: number
  /**
   * Row scope: table (lower case) → column. Every reference to such a table
   * (FROM, JOIN, IN, in every subquery, CTE body and compound member) is
   * rewritten to `(SELECT * FROM main.<table> WHERE "<column>" = ?N)`, under
   * the name it had, with one bound parameter per table (`scoped`).
   */
  rowScope?: ReadonlyMap<string, string>
  /** 'none' (default): every parameter is refused. 'named': `:name` parameters, renumbered ?1.. in order of first use (`parameters`). */
  parameters?: 'none' | 'named'
}

/** Stable refusal codes; callers match on these, never on message text. */
export type GuardCode =
  | 'too_long'
  | 'invalid_character'
  | 'empty'
  | 'parse_error'
  | 'too_complex'
  | 'multiple_statements'
  | 'not_select'
  | 'unsupported_syntax'
  | 'parameter_not_allowed'
  | 'table_not_allowed'
  | 'schema_not_allowed'
  | 'table_function_not_allowed'
  | 'function_not_allowed'
  | 'unbounded_recursion'
  | 'identifier_not_in_scope'
  /** guardWrite: the statement is not one INSERT, UPDATE or DELETE */
  | 'not_write'

/**
 * Test-only switches that turn off one of the guard's own defences, so the
 * differential fuzz (test/integration/sql-differential.test.ts) can prove
 * that it finds the bypass of issue #13 when that defence is missing.
 * Never passed by execute.ts (it calls guardQuery with two arguments), so
 * nothing reachable from the tool can set them.
 */
export interface GuardTestSwitches {
  /** skip the refusal of non-ASCII characters outside quotes (the guard before issue #13) */
  allowNonAscii?: boolean
  /** skip the identifier scope checks of LIMIT/OFFSET, qualified columns and window names (ditto) */
  skipScopeChecks?: boolean
}

export type GuardRefusal = { ok: false; code: GuardCode; message: string }
export type GuardResult = {
  ok: true
  /** `statement` wrapped as `SELECT * FROM (\n<statement>\n) LIMIT <maxRows + 1>` */
  sql: string
  /** the statement's own text, with named parameters renumbered and row-scoped tables rewritten */
  statement: string
  /** named parameters (without `:`) in the order of their numbers ?1, ?2 ... */
  parameters: string[]
  /** row-scoped tables read, in the order of their parameters, numbered after `parameters` */
  scoped: string[]
  /** the real tables the query reads (lower case) */
  tables: string[]
  /** each recursive CTE's most rows (LIMIT + OFFSET), by lower-case name */
  recursiveRows: ReadonlyMap<string, number>
  /** the tables or CTEs each table alias stands for (lower case); subquery aliases are not listed */
  aliases: ReadonlyMap<string, ReadonlySet<string>>
  /** product of the lengths of every literal `IN (...)` list: how often an equality search may repeat */
  inListProduct: number
} | GuardRefusal

/** The tool's input limit, in UTF-16 code units (JavaScript string length). */
export const MAX_QUERY_LENGTH = 1000
/** Most rows a recursive CTE may produce (its LIMIT plus OFFSET). */
export const MAX_RECURSIVE_ROWS = 10_000
/** Most rows the recursive CTEs read together in one query (or one CTE body) may multiply to. */
export const MAX_JOINED_ROWS = 1_000_000
/** Largest accepted maxRows; the wrapper asks for maxRows + 1. */
const MAX_ROWS_CEILING = 1_000_000

/**
 * Parser work budget. sql-parser-cst consults `options.dialect` on every
 * dialect-dependent grammar choice, so the number of reads tracks the work
 * done (legit queries: 20-150 reads per character; the worst nestings
 * measured: ~3 reads per microsecond). The budget scales with the length so
 * that long, flat, legitimate queries pass and short exponential ones stop
 * within a few milliseconds; at 1000 characters it caps at ~100 ms.
 */
const PARSE_BUDGET_BASE = 20_000
const PARSE_BUDGET_PER_CHAR = 250

/**
 * Functions a query may call. Everything else is refused: the list is what
 * an analyst needs for reports over the business tables, and nothing that
 * allocates on demand, reads files, loads code or probes the engine.
 */
const FUNCTIONS: ReadonlySet<string> = new Set([
  // aggregates
  'count', 'sum', 'total', 'avg', 'min', 'max', 'group_concat', 'string_agg',
  // window functions
  'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist', 'ntile',
  'lag', 'lead', 'first_value', 'last_value', 'nth_value',
  // core scalars
  'abs', 'coalesce', 'ifnull', 'nullif', 'iif', 'if', 'typeof', 'round', 'sign',
  'lower', 'upper', 'length', 'octet_length', 'substr', 'substring', 'trim', 'ltrim',
  'rtrim', 'instr', 'replace', 'like', 'glob', 'hex', 'unhex', 'quote', 'unicode',
  'concat', 'concat_ws', 'likely', 'unlikely', 'likelihood', 'random',
  // date and time
  'date', 'time', 'datetime', 'julianday', 'strftime', 'unixepoch', 'timediff',
  'current_date', 'current_time', 'current_timestamp',
  // math
  'acos', 'acosh', 'asin', 'asinh', 'atan', 'atan2', 'atanh', 'ceil', 'ceiling', 'cos',
  'cosh', 'degrees', 'exp', 'floor', 'ln', 'log', 'log10', 'log2', 'mod', 'pi', 'pow',
  'power', 'radians', 'sin', 'sinh', 'sqrt', 'tan', 'tanh', 'trunc',
  // JSON (scalar and aggregate; json_each/json_tree are table-valued: refused)
  'json', 'json_array', 'json_array_length', 'json_extract', 'json_object', 'json_quote',
  'json_type', 'json_valid', 'json_group_array', 'json_group_object',
])

/**
 * Allowed functions that can multiply the length of a value: hex() doubles
 * it, quote() and json_quote() double quote characters (and hex-encode
 * blobs), replace() multiplies it by the replacement's length, concat_ws()
 * repeats its separator once per argument, group_concat()/string_agg()
 * once per row. One of them is harmless; one inside another (at any depth,
 * through other functions and scalar subqueries) grows exponentially with
 * the nesting depth, so it is refused. concat() and `||` are not on the
 * list: their output is never longer than their inputs together, so growth
 * through them needs the query text itself to repeat.
 */
const GROWTH_FUNCTIONS: ReadonlySet<string> = new Set([
  'hex', 'quote', 'json_quote', 'replace', 'concat_ws', 'group_concat', 'string_agg',
])
const GROWTH_LIST = 'hex, quote, json_quote, replace, concat_ws, group_concat and string_agg'

/** Why some notorious functions are refused, for a more useful message. */
const FUNCTION_REASONS: Readonly<Record<string, string>> = {
  load_extension: 'it loads native code',
  randomblob: 'it allocates a blob of any requested size',
  zeroblob: 'it allocates a blob of any requested size',
  printf: 'format widths can allocate huge strings',
  format: 'format widths can allocate huge strings',
  char: 'it is used to smuggle text past filters',
}

/** Node types walked generically: expressions and clause parts with no table reference of their own. */
const GENERIC: ReadonlySet<string> = new Set([
  'select_clause', 'select_all', 'select_distinct', 'where_clause', 'group_by_clause',
  'having_clause', 'window_clause', 'named_window', 'window_definition', 'partition_by_clause',
  'order_by_clause', 'sort_specification', 'sort_direction_asc', 'sort_direction_desc',
  'limit_clause', 'values_clause', 'frame_clause', 'frame_between', 'frame_bound_current_row',
  'frame_bound_preceding', 'frame_bound_following', 'frame_unbounded', 'frame_exclusion',
  'join_on_specification', 'join_using_specification', 'list_expr', 'paren_expr', 'binary_expr',
  'prefix_op_expr', 'postfix_op_expr', 'between_expr', 'case_expr', 'case_when', 'case_else',
  'cast_expr', 'cast_arg', 'data_type_name', 'modified_data_type', 'func_args', 'filter_arg',
  'over_arg', 'alias', 'identifier', 'member_expr', 'all_columns', 'keyword', 'string_literal',
  'number_literal', 'blob_literal', 'boolean_literal', 'null_literal',
])

/** Clauses a SELECT may carry (WITH and FROM have their own handling). */
const SELECT_CLAUSES: ReadonlySet<string> = new Set([
  'select_clause', 'where_clause', 'group_by_clause', 'having_clause', 'window_clause',
  'order_by_clause', 'limit_clause', 'values_clause',
])

/** Statement names for messages where the node type alone reads badly. */
const STATEMENT_NAMES: Readonly<Record<string, string>> = {
  start_transaction_stmt: 'BEGIN',
  commit_transaction_stmt: 'COMMIT',
  rollback_transaction_stmt: 'ROLLBACK',
  release_savepoint_stmt: 'RELEASE',
  attach_database_stmt: 'ATTACH',
  detach_database_stmt: 'DETACH',
  alter_table_stmt: 'ALTER TABLE',
}

const PARAM_TYPES = ['?', '?nr', ':name', '$name', '@name'] as const

export function guardQuery(query: string, opts: GuardOptions, testSwitches?: GuardTestSwitches): GuardResult {
  if (!Number.isInteger(opts.maxRows) || opts.maxRows < 1 || opts.maxRows > MAX_ROWS_CEILING) {
    throw new RangeError(`guardQuery: maxRows must be an integer in 1..${MAX_ROWS_CEILING}`)
  }
  if (query.length > MAX_QUERY_LENGTH) {
    return refusal('too_long', `the query is ${query.length} characters long; at most ${MAX_QUERY_LENGTH} are allowed`)
  }
  const control = /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.exec(query)
  if (control) {
    const code = control[0].charCodeAt(0).toString(16).padStart(4, '0')
    return refusal('invalid_character', `the query contains the control character U+${code.toUpperCase()} at offset ${control.index}`)
  }

  const foreign = testSwitches?.allowNonAscii === true ? -1 : firstNonAsciiOutsideQuotes(query)
  if (foreign !== -1) {
    const code = query.codePointAt(foreign)!.toString(16).toUpperCase().padStart(4, '0')
    return refusal(
      'invalid_character',
      `the query contains the non-ASCII character U+${code} at offset ${foreign} outside a string literal or quoted identifier; SQLite and the guard may read it differently, so only ASCII is allowed there`,
    )
  }

  const parsed = parseSqlite(query)
  if (!parsed.ok) return parsed
  const statements = parsed.program.statements.filter((s) => s.type !== 'empty')
  if (statements.length === 0) return refusal('empty', 'the query is empty: send one SELECT statement')
  if (statements.length > 1) {
    const kinds = statements.map(statementName).join(', ')
    return refusal('multiple_statements', `only one statement is allowed (found ${statements.length}: ${kinds})`)
  }
  const statement = statements[0]!
  if (statement.type !== 'select_stmt' && statement.type !== 'compound_select_stmt') {
    return refusal('not_select', `only SELECT statements are allowed (got ${statementName(statement)})`)
  }

  const ctx: WalkContext = {
    query,
    allowed: opts.allowedTables === 'any' ? 'any' : new Set(opts.allowedTables.map(asciiLower)),
    allowedList: opts.allowedTables === 'any' ? '' : opts.allowedTables.map(asciiLower).join(', '),
    rowScope: opts.rowScope ?? new Map(),
    namedParameters: opts.parameters === 'named',
    edits: [],
    parameters: [],
    scoped: [],
    frames: [],
    tables: new Set(),
    bodies: [],
    product: 1,
    growth: [],
    scopeChecks: testSwitches?.skipScopeChecks !== true,
    sources: [],
    windows: [],
    inLimit: false,
    recursiveRows: new Map(),
    aliases: new Map(),
    inListProduct: 1,
  }
  try {
    walkQuery(statement, ctx)
  } catch (err) {
    if (err instanceof Refused) return refusal(err.code, err.message)
    if (err instanceof RangeError) return refusal('too_complex', 'the query is nested too deeply to check; simplify it')
    throw err
  }

  const [start, end] = statement.range ?? [0, query.length]
  const body = applyEdits(query, start, end, ctx)
  return {
    ok: true,
    sql: `SELECT * FROM (\n${body}\n) LIMIT ${opts.maxRows + 1}`,
    statement: body,
    parameters: ctx.parameters,
    scoped: ctx.scoped,
    tables: [...ctx.tables].sort(),
    recursiveRows: ctx.recursiveRows,
    aliases: ctx.aliases,
    inListProduct: ctx.inListProduct,
  }
}

// ---------------------------------------------------------------------------
// Parsing

class ParseBudgetExceeded extends Error {}

type Parsed = { ok: true; program: Program } | GuardRefusal

function parseSqlite(query: string): Parsed {
  let reads = 0
  const budget = PARSE_BUDGET_BASE + PARSE_BUDGET_PER_CHAR * query.length
  const options = {
    get dialect(): 'sqlite' {
      if (++reads > budget) throw new ParseBudgetExceeded()
      return 'sqlite'
    },
    includeRange: true,
    paramTypes: [...PARAM_TYPES],
    filename: 'query',
  }
  try {
    return { ok: true, program: parse(query, options) }
  } catch (err) {
    if (err instanceof ParseBudgetExceeded || err instanceof RangeError) {
      return refusal('too_complex', 'the query is too complex to check (too much nesting); simplify it')
    }
    if (err instanceof FormattedSyntaxError) {
      return refusal('parse_error', syntaxMessage(err.message, query))
    }
    throw err
  }
}

/**
 * Turns sql-parser-cst's multi-line report into one line a model can act on:
 *   syntax error at line 1, column 8 near "FROM x": unexpected "FROM"; expected one of: "(", "*", ...
 */
function syntaxMessage(raw: string, query: string): string {
  const unexpected = /^Syntax Error: Unexpected (.*)$/m.exec(raw)?.[1]
  const expected = /^Was expecting to see: (.*)$/m.exec(raw)?.[1]
  const where = /^--> [^\n]*?:(\d+):(\d+)$/m.exec(raw)
  let message = 'syntax error'
  if (where) {
    const line = Number(where[1])
    const column = Number(where[2])
    message += ` at line ${line}, column ${column}`
    const text = query.split(/\r\n|\n|\r/)[line - 1] ?? ''
    const near = text.slice(column - 1, column - 1 + 24).trim()
    if (near) message += ` near ${JSON.stringify(near)}`
  }
  if (unexpected) message += `: unexpected ${unexpected}`
  if (expected?.includes('"SELECT"') && expected.includes('"ALTER"')) {
    // At a statement boundary the parser lists every statement kind; only one is accepted here.
    message += '; expected a SELECT statement (SELECT, WITH ... SELECT or VALUES)'
  } else if (expected) {
    const items = expected
      .replace(/, or /, ', ')
      .split(/, (?=")|, (?=end of input)|, (?=identifier)|, (?=number)|, (?=string)|, (?=whitespace)/)
      .map((s) => s.trim())
      .filter((s) => s !== '' && s !== 'whitespace' && !s.startsWith('['))
    if (items.length > 0) {
      const shown = items.slice(0, 12).join(', ')
      message += `; expected one of: ${shown}${items.length > 12 ? ', ...' : ''}`
    }
  }
  if (where && /[^\x00-\x7f]/.test(query.split(/\r\n|\n|\r/)[Number(where[1]) - 1] ?? '')) {
    message += ' (the line contains non-ASCII characters: look-alike letters or invisible spaces are not SQL)'
  }
  return message
}

// ---------------------------------------------------------------------------
// The walk

class Refused extends Error {
  constructor(
    readonly code: GuardCode,
    message: string,
  ) {
    super(message)
  }
}

interface CteEntry {
  /** true while the CTE's own body is being walked: a reference then is recursion */
  inBody: boolean
  selfReferenced: boolean
  /** most rows one read of this CTE yields, when it is recursive or built on one (else undefined) */
  rows: number | undefined
  /** product of the row bounds of the heavy CTEs its body reads */
  product: number
}

/**
 * A change to the statement's text (a named parameter renumbered, a scoped
 * table read through its filter, a scoped write's condition), rendered once
 * the walk is over and every parameter's number is known.
 */
interface Edit {
  start: number
  end: number
  render: () => string
}

/** What numbering parameters needs: named ones first (in order of first use), then one per scoped table. */
interface Numbering {
  namedParameters: boolean
  parameters: string[]
  scoped: string[]
  edits: Edit[]
}

/** The number of the parameter bound to `table`'s row-scope value. */
function scopeParameter(table: string, n: Numbering): number {
  return n.parameters.length + n.scoped.indexOf(table) + 1
}

interface WalkContext extends Numbering {
  query: string
  allowed: ReadonlySet<string> | 'any'
  allowedList: string
  rowScope: ReadonlyMap<string, string>
  /** CTE scopes, innermost last */
  frames: Map<string, CteEntry>[]
  /** real tables referenced (lower case) */
  tables: Set<string>
  /** the CTEs whose bodies are being walked, innermost last */
  bodies: CteEntry[]
  /** product of the row bounds of the heavy CTEs the main query reads */
  product: number
  /** the growth functions (GROWTH_FUNCTIONS) enclosing the current node, outermost first */
  growth: string[]
  /** identifier scope checks on (off only through GuardTestSwitches) */
  scopeChecks: boolean
  /** names (tables, aliases, CTEs) in the FROM of each enclosing SELECT, innermost last */
  sources: Set<string>[]
  /** window names each enclosing SELECT defines, innermost last */
  windows: Set<string>[]
  /** inside a LIMIT / OFFSET expression of the current SELECT (not of a subquery in it) */
  inLimit: boolean
  /** the row bound of each recursive CTE (lower-case name; the largest where a name repeats) */
  recursiveRows: Map<string, number>
  /** what each table alias names (tables or CTEs, lower case), over the whole query */
  aliases: Map<string, Set<string>>
  /** product of the lengths of the literal IN (...) lists, over the whole query */
  inListProduct: number
}

type NodeOf<T extends Node['type']> = Extract<Node, { type: T }>

/** A query: SELECT, compound SELECT, VALUES, or one of these in parentheses. */
function walkQuery(node: Node, ctx: WalkContext): void {
  if (node.type === 'paren_expr') return walkQuery(node.expr, ctx)
  if (node.type !== 'select_stmt' && node.type !== 'compound_select_stmt') {
    throw new Refused('not_select', `only SELECT statements are allowed (got ${statementName(node)})`)
  }
  // A WITH written before a compound SELECT scopes over every member; the
  // parser stores it in the first member, and ORDER BY/LIMIT in the last.
  const members: Node[] = []
  flattenCompound(node, members)
  const first = members[0]
  const withClause = first?.type === 'select_stmt' ? first.clauses.find((c) => c.type === 'with_clause') : undefined
  if (withClause?.type === 'with_clause') walkWith(withClause, ctx)
  for (const member of members) walkSelectMember(member, withClause, ctx)
  if (withClause) ctx.frames.pop()
}

function flattenCompound(node: Node, out: Node[]): void {
  if (node.type === 'compound_select_stmt') {
    flattenCompound(node.left, out)
    flattenCompound(node.right, out)
  } else {
    out.push(node)
  }
}

function walkSelectMember(node: Node, scopedWith: Node | undefined, ctx: WalkContext): void {
  if (node.type !== 'select_stmt') return walkQuery(node, ctx)
  // What this SELECT's clauses may name: the sources of its FROM, the windows of its WINDOW clause.
  const sources = new Set<string>()
  const windows = new Set<string>()
  for (const clause of node.clauses) {
    if (clause.type === 'from_clause') collectSources(clause.expr, sources)
    if (clause.type === 'window_clause') for (const w of clause.namedWindows.items) windows.add(asciiLower(w.name.name))
  }
  const outerLimit = ctx.inLimit
  ctx.inLimit = false
  ctx.sources.push(sources)
  ctx.windows.push(windows)
  for (const clause of node.clauses) {
    if (clause === scopedWith) continue
    if (clause.type === 'with_clause') {
      throw new Refused('unsupported_syntax', 'WITH is only allowed at the start of a query or subquery')
    }
    if (clause.type === 'from_clause') walkTableExpr(clause.expr, ctx)
    else if (clause.type === 'window_clause') walkWindowClause(clause, ctx)
    else if (clause.type === 'limit_clause') {
      ctx.inLimit = true
      walkChildren(clause, ctx)
      ctx.inLimit = false
    } else if (SELECT_CLAUSES.has(clause.type)) walkChildren(clause, ctx)
    else throw unsupported(clause)
  }
  ctx.sources.pop()
  ctx.windows.pop()
  ctx.inLimit = outerLimit
}

/** The names a FROM clause brings into scope: tables (by name), aliases, CTE references. */
function collectSources(node: Node, out: Set<string>): void {
  switch (node.type) {
    case 'identifier':
      out.add(asciiLower(node.name))
      return
    case 'member_expr':
      if (node.property.type === 'identifier') out.add(asciiLower(node.property.name))
      return
    case 'alias':
      out.add(asciiLower(node.alias.name))
      return collectSources(node.expr, out)
    case 'indexed_table':
    case 'not_indexed_table':
      return collectSources(node.table, out)
    case 'join_expr':
      collectSources(node.left, out)
      collectSources(node.right, out)
      return
    case 'paren_expr':
      if (node.expr.type !== 'select_stmt' && node.expr.type !== 'compound_select_stmt') collectSources(node.expr, out)
      return
    default:
      return
  }
}

/** `WINDOW a AS (...), b AS (a ...)`: a base window must be defined before the window built on it. */
function walkWindowClause(node: NodeOf<'window_clause'>, ctx: WalkContext): void {
  const defined = new Set<string>()
  for (const named of node.namedWindows.items) {
    const base = named.window.expr.baseWindowName
    if (ctx.scopeChecks && base && !defined.has(asciiLower(base.name))) {
      throw new Refused('identifier_not_in_scope', `window ${clip(named.name.name)} is based on window ${clip(base.name)}, which this SELECT does not define before it`)
    }
    walkChildren(named.window.expr, ctx)
    defined.add(asciiLower(named.name.name))
  }
}

/** `OVER w` names a window of this SELECT's WINDOW clause; `OVER (...)` is walked like any definition. */
function walkOver(node: NodeOf<'over_arg'>, ctx: WalkContext): void {
  const window = node.window
  if (window.type === 'identifier') {
    if (ctx.scopeChecks && !ctx.windows.at(-1)?.has(asciiLower(window.name))) {
      throw new Refused('identifier_not_in_scope', `OVER ${clip(window.name)}: this SELECT defines no window named ${clip(window.name)} (define it with WINDOW ${clip(window.name)} AS (...))`)
    }
    return
  }
  const base = window.expr.baseWindowName
  if (ctx.scopeChecks && base && !ctx.windows.at(-1)?.has(asciiLower(base.name))) {
    throw new Refused('identifier_not_in_scope', `OVER (${clip(base.name)} ...): this SELECT defines no window named ${clip(base.name)}`)
  }
  walkChildren(window.expr, ctx)
}

/**
 * A column reference. In LIMIT / OFFSET none is valid (SQLite resolves no
 * column there). A qualified one (`q.col`, `q.*`, `main.q.col`) needs `q` in
 * the FROM of this SELECT or an enclosing one.
 */
function checkColumnRef(node: NodeOf<'identifier'> | NodeOf<'member_expr'>, ctx: WalkContext): void {
  if (!ctx.scopeChecks) return
  const text = node.type === 'identifier' ? node.name : memberText(node)
  if (ctx.inLimit) {
    throw new Refused('identifier_not_in_scope', `LIMIT and OFFSET take a number or an expression without columns; ${clip(text)} is not one`)
  }
  if (node.type !== 'member_expr') return
  if (node.property.type !== 'identifier' && node.property.type !== 'all_columns') throw unsupported(node.property)
  let qualifier = node.object
  if (qualifier.type === 'member_expr') {
    // main.<table>.<column>
    if (qualifier.object.type !== 'identifier' || asciiLower(qualifier.object.name) !== 'main' || qualifier.property.type !== 'identifier') {
      throw new Refused('schema_not_allowed', `${clip(text)}: only columns of tables of the main schema can be referred to`)
    }
    qualifier = qualifier.property
  }
  if (qualifier.type !== 'identifier') throw unsupported(qualifier)
  const name = asciiLower(qualifier.name)
  if (!ctx.sources.some((frame) => frame.has(name))) {
    const visible = [...new Set(ctx.sources.flatMap((frame) => [...frame]))].sort()
    throw new Refused(
      'identifier_not_in_scope',
      `${clip(text)}: no table, alias or CTE named ${clip(qualifier.name)} is in the FROM clause here${visible.length > 0 ? ` (in scope: ${clip(visible.join(', '))})` : ''}`,
    )
  }
}

function memberText(node: Node): string {
  if (node.type === 'identifier') return node.name
  if (node.type === 'all_columns') return '*'
  if (node.type === 'member_expr') return `${memberText(node.object)}.${memberText(node.property)}`
  return '?'
}

function walkWith(node: NodeOf<'with_clause'>, ctx: WalkContext): void {
  const frame = new Map<string, CteEntry>()
  ctx.frames.push(frame)
  for (const cte of node.tables.items) {
    const name = asciiLower(cte.table.name)
    if (isProtectedTable(name)) {
      throw new Refused('table_not_allowed', `a CTE may not be named ${clip(cte.table.name)}: that name is reserved for a table that is not queryable`)
    }
    if (cte.search || cte.cycle) throw unsupported(cte.search ?? cte.cycle!)
    checkPlainName(cte.table.name, 'a CTE name')
    const entry: CteEntry = { inBody: true, selfReferenced: false, rows: undefined, product: 1 }
    frame.set(name, entry)
    ctx.bodies.push(entry)
    const body = cte.expr.expr
    if (body.type !== 'select_stmt' && body.type !== 'compound_select_stmt' && body.type !== 'paren_expr') {
      throw new Refused('not_select', `only SELECT statements are allowed (got ${statementName(body)} inside WITH ${clip(cte.table.name)})`)
    }
    walkQuery(body, ctx)
    ctx.bodies.pop()
    entry.inBody = false
    if (entry.selfReferenced) {
      entry.rows = checkRecursionBound(cte.table.name, body)
      ctx.recursiveRows.set(name, Math.max(entry.rows, ctx.recursiveRows.get(name) ?? 0))
    }
    else if (entry.product > 1) entry.rows = entry.product
  }
}

/**
 * A recursive CTE must stop by itself: its compound SELECT (whose LIMIT the
 * parser stores in the last member) needs LIMIT n with a literal n, and
 * n + OFFSET within MAX_RECURSIVE_ROWS.
 */
function checkRecursionBound(name: string, body: Node): number {
  let last = body
  while (last.type === 'compound_select_stmt') last = last.right
  const limit = last.type === 'select_stmt' ? last.clauses.find((c) => c.type === 'limit_clause') : undefined
  const hint = `add LIMIT n (a number up to ${MAX_RECURSIVE_ROWS}) at the end of its SELECT`
  if (limit?.type !== 'limit_clause') {
    throw new Refused('unbounded_recursion', `recursive CTE ${clip(name)} has no LIMIT, so nothing bounds its recursion; ${hint}`)
  }
  const count = literalCount(limit.count)
  const offset = limit.offset === undefined ? 0 : literalCount(limit.offset)
  if (count === undefined || offset === undefined || count + offset > MAX_RECURSIVE_ROWS) {
    throw new Refused('unbounded_recursion', `recursive CTE ${clip(name)} needs a literal LIMIT (plus OFFSET) of at most ${MAX_RECURSIVE_ROWS}; ${hint}`)
  }
  return Math.max(1, count + offset)
}

function literalCount(node: Node | undefined): number | undefined {
  if (node?.type !== 'number_literal') return undefined
  return Number.isInteger(node.value) && node.value >= 0 ? node.value : undefined
}

/**
 * How a table reference is written, for the row-scope rewrite: `aliased`
 * when it has its own alias (the filtered subquery takes that alias),
 * `indexed` under INDEXED BY / NOT INDEXED (which a subquery cannot carry).
 */
interface RefForm {
  aliased: boolean
  indexed: boolean
}
const BARE: RefForm = { aliased: false, indexed: false }

/** FROM clause contents: tables, joins, subqueries. */
function walkTableExpr(node: Node, ctx: WalkContext, form: RefForm = BARE): void {
  switch (node.type) {
    case 'identifier':
      return checkTable(node.name, false, ctx, { node, as: form.aliased ? undefined : textOf(node, ctx), indexed: form.indexed })
    case 'member_expr':
      return checkQualifiedTable(node, ctx, form)
    case 'alias': {
      checkPlainName(node.alias.name, 'a table alias')
      const target = node.expr.type === 'identifier' ? node.expr.name : node.expr.type === 'member_expr' && node.expr.property.type === 'identifier' ? node.expr.property.name : undefined
      if (target !== undefined) {
        const alias = asciiLower(node.alias.name)
        const targets = ctx.aliases.get(alias) ?? new Set<string>()
        targets.add(asciiLower(target))
        ctx.aliases.set(alias, targets)
      }
      return walkTableExpr(node.expr, ctx, { ...form, aliased: true })
    }
    case 'indexed_table':
    case 'not_indexed_table':
      return walkTableExpr(node.table, ctx, { ...form, indexed: true })
    case 'join_expr':
      walkTableExpr(node.left, ctx)
      walkTableExpr(node.right, ctx)
      if (node.specification) walkChildren(node.specification, ctx)
      return
    case 'paren_expr':
      if (node.expr.type === 'select_stmt' || node.expr.type === 'compound_select_stmt') return walkQuery(node.expr, ctx)
      return walkTableExpr(node.expr, ctx)
    case 'func_call':
      throw tableFunction(node)
    default:
      throw unsupported(node)
  }
}

function checkQualifiedTable(node: NodeOf<'member_expr'>, ctx: WalkContext, form: RefForm | 'in'): void {
  const schema = node.object
  const table = node.property
  if (schema.type !== 'identifier' || table.type !== 'identifier') {
    throw new Refused('schema_not_allowed', 'only tables of the main schema can be queried, as <table> or main.<table>')
  }
  if (asciiLower(schema.name) !== 'main') {
    throw new Refused('schema_not_allowed', `schema ${clip(schema.name)} is not allowed; only tables of the main schema can be queried`)
  }
  const as = form === 'in' || form.aliased ? undefined : textOf(table, ctx)
  checkTable(table.name, true, ctx, { node, as, indexed: form !== 'in' && form.indexed })
}

/** Where a real table is referred to: the node to rewrite, and the name it is known by when it has no alias. */
interface TableRef {
  node: Node
  as: string | undefined
  indexed: boolean
}

/** A table reference: a CTE in scope (unless schema-qualified), else an allowed table. */
function checkTable(rawName: string, qualified: boolean, ctx: WalkContext, ref: TableRef): void {
  const name = asciiLower(rawName)
  if (!qualified) {
    for (let i = ctx.frames.length - 1; i >= 0; i--) {
      const entry = ctx.frames[i]!.get(name)
      if (entry) {
        if (entry.inBody) entry.selfReferenced = true
        else if (entry.rows !== undefined) countHeavyRead(rawName, entry.rows, ctx)
        return
      }
    }
  }
  if (isProtectedTable(name)) {
    throw new Refused('table_not_allowed', `table ${clip(rawName)} is not queryable${ctx.allowed === 'any' ? '' : `; the queryable tables are: ${ctx.allowedList || '(none)'}`}`)
  }
  if (ctx.allowed !== 'any' && !ctx.allowed.has(name)) {
    throw new Refused('table_not_allowed', `table ${clip(rawName)} is not queryable; the queryable tables are: ${ctx.allowedList || '(none)'}`)
  }
  ctx.tables.add(name)
  if (!ctx.rowScope.has(name)) return
  if (ref.indexed) {
    throw new Refused('unsupported_syntax', `INDEXED BY and NOT INDEXED are not supported on ${clip(rawName)}: its rows are scoped to the caller`)
  }
  const [start, end] = rangeOf(ref.node)
  if (!ctx.scoped.includes(name)) ctx.scoped.push(name)
  const column = ctx.rowScope.get(name)!
  ctx.edits.push({ start, end, render: () => scopedSource(name, column, scopeParameter(name, ctx)) + (ref.as === undefined ? '' : ` AS ${ref.as}`) })
}

/**
 * Bounding the work, not only each CTE: a recursive CTE yields up to its
 * LIMIT rows per read, and reads multiply (`FROM a, a b` is 10^8 rows, a
 * third alias 10^12; so does a correlated subquery over it, or a join of two
 * recursive CTEs). The product of the row bounds of every heavy CTE read by
 * the main query, and by each CTE body, stays within MAX_JOINED_ROWS; a CTE
 * built on heavy ones is heavy too, with that product as its bound.
 */
function countHeavyRead(rawName: string, rows: number, ctx: WalkContext): void {
  const reader = ctx.bodies.at(-1) ?? ctx
  reader.product *= rows
  if (reader.product > MAX_JOINED_ROWS) {
    throw new Refused(
      'unbounded_recursion',
      `this query would visit about ${powerOfTen(reader.product)} rows or more: ${clip(rawName)} is (or is built on) a recursive CTE of up to ${rows} rows, and the recursive CTEs read together in one query multiply to over ${MAX_JOINED_ROWS} rows; read a recursive CTE only once, or lower its LIMIT`,
    )
  }
}

/** Expressions and clause parts: descend into every child node. */
function walkChildren(node: Node, ctx: WalkContext): void {
  for (const value of Object.values(node)) {
    if (Array.isArray(value)) {
      for (const item of value) if (isNode(item)) walkNode(item, ctx)
    } else if (isNode(value)) {
      walkNode(value, ctx)
    }
  }
}

function walkNode(node: Node, ctx: WalkContext): void {
  switch (node.type) {
    case 'select_stmt':
    case 'compound_select_stmt':
      return walkQuery(node, ctx)
    case 'func_call':
      return walkFunction(node, ctx)
    case 'binary_expr':
      if (isInOperator(node.operator)) return walkIn(node, ctx)
      return walkChildren(node, ctx)
    case 'identifier':
      return checkColumnRef(node, ctx)
    case 'member_expr':
      return checkColumnRef(node, ctx)
    case 'over_arg':
      return walkOver(node, ctx)
    case 'parameter':
      return noteParameter(node, ctx)
    default:
      if (GENERIC.has(node.type)) return walkChildren(node, ctx)
      if (node.type.endsWith('_stmt')) {
        throw new Refused('not_select', `only SELECT statements are allowed (got ${statementName(node)})`)
      }
      throw unsupported(node)
  }
}

/**
 * `x IN table`, `x IN main.table`, `x IN table_function(...)`, or `x IN (...)`.
 * SQLite's grammar also accepts a string literal as the table name here
 * (`x IN 'audit_log'` reads the table audit_log), so a string is a table too.
 */
function walkIn(node: NodeOf<'binary_expr'>, ctx: WalkContext): void {
  walkNode(node.left as Node, ctx)
  const right = node.right as Node
  const ref = { node: right, as: undefined, indexed: false }
  if (right.type === 'identifier') return checkTable(right.name, false, ctx, ref)
  if (right.type === 'string_literal') return checkTable(right.value, false, ctx, ref)
  if (right.type === 'member_expr') return checkQualifiedTable(right, ctx, 'in')
  if (right.type === 'func_call') throw tableFunction(right)
  // a literal list repeats an index search once per value: the work budget multiplies by it
  if (right.type === 'paren_expr' && right.expr.type === 'list_expr') ctx.inListProduct *= Math.max(1, right.expr.items.length)
  walkNode(right, ctx)
}

function walkFunction(node: NodeOf<'func_call'>, ctx: WalkContext): void {
  if (node.name.type === 'member_expr') {
    throw new Refused('function_not_allowed', 'schema-qualified function calls are not allowed')
  }
  if (node.name.type !== 'identifier') {
    throw new Refused('function_not_allowed', 'function names must be plain identifiers')
  }
  const name = asciiLower(node.name.name)
  if (!FUNCTIONS.has(name)) {
    const reason = FUNCTION_REASONS[name]
    throw new Refused(
      'function_not_allowed',
      `function ${clip(node.name.name)} is not allowed${reason ? ` (${reason})` : ''}; use aggregate, string, date/time, math or JSON functions`,
    )
  }
  const growth = GROWTH_FUNCTIONS.has(name)
  const outer = ctx.growth[ctx.growth.length - 1]
  if (growth && outer !== undefined) {
    throw new Refused(
      'function_not_allowed',
      `${name}() nested inside ${outer}() is not allowed (${GROWTH_LIST} can each multiply the length of a value, so nesting them grows it exponentially); apply at most one of them to a value`,
    )
  }
  if (growth) ctx.growth.push(name)
  if (node.args) walkChildren(node.args, ctx)
  if (node.filter) walkChildren(node.filter, ctx)
  if (node.over) walkOver(node.over, ctx)
  if (growth) ctx.growth.pop()
}

/** `:name` where named parameters are on (declared tools); any other parameter is refused. */
function noteParameter(node: NodeOf<'parameter'>, ctx: Numbering): void {
  if (!ctx.namedParameters) {
    throw new Refused('parameter_not_allowed', `bound parameters such as ${clip(node.text)} are not allowed; write the value into the query as a literal`)
  }
  if (!/^:[A-Za-z_][A-Za-z0-9_]*$/.test(node.text)) {
    throw new Refused('parameter_not_allowed', `parameter ${clip(node.text)}: only named parameters written :name are allowed`)
  }
  const name = node.text.slice(1)
  if (!ctx.parameters.includes(name)) ctx.parameters.push(name)
  const [start, end] = rangeOf(node)
  ctx.edits.push({ start, end, render: () => `?${ctx.parameters.indexOf(name) + 1}` })
}

/**
 * The statement's text from `start` to `end` with the walk's edits applied:
 * named parameters become ?1.. in order of first use; each row-scoped table
 * reference becomes its filtered subquery, whose parameter is numbered after
 * the named ones (one per table).
 */
function applyEdits(query: string, start: number, end: number, ctx: Numbering): string {
  let body = query.slice(start, end)
  // from the end, so earlier offsets stay valid; of two edits at one offset the later-pushed goes first
  const edits = ctx.edits.map((edit, i) => ({ edit, i })).sort((a, b) => b.edit.start - a.edit.start || b.i - a.i)
  for (const { edit } of edits) body = body.slice(0, edit.start - start) + edit.render() + body.slice(edit.end - start)
  return body
}

// ---------------------------------------------------------------------------
// Declared writes

export type WriteGuardResult =
  | { ok: true; statement: string; table: string; parameters: string[]; scoped: string[] }
  | GuardRefusal

const WRITE_CLAUSES: Readonly<Record<string, ReadonlySet<string>>> = {
  insert_stmt: new Set(['insert_clause', 'values_clause']),
  update_stmt: new Set(['update_clause', 'set_clause', 'where_clause']),
  delete_stmt: new Set(['delete_clause', 'where_clause']),
}

/**
 * A declared tool's write (trusted text from the tools file, checked all
 * the same): exactly one INSERT ... VALUES (one row), UPDATE ... SET ...
 * [WHERE] or DELETE FROM ... [WHERE] of one non-protected table, with
 * `:name` parameters, functions from the read allow-list and no subquery
 * (a write reads nothing it could leak, and its row scope is one
 * condition). Row scope: an UPDATE or DELETE of a scoped table gets
 * `AND "<column>" = ?N` on its WHERE; an INSERT gets the column and the
 * caller's value appended (a statement that sets the column itself is
 * refused: the scope sets it).
 */
export function guardWrite(sql: string, rowScope: ReadonlyMap<string, string> = new Map()): WriteGuardResult {
  const parsed = parseSqlite(sql)
  if (!parsed.ok) return parsed
  const statements = parsed.program.statements.filter((s) => s.type !== 'empty')
  if (statements.length !== 1) return refusal('multiple_statements', `a declared write is exactly one statement (found ${statements.length})`)
  const statement = statements[0]!
  const allowed = WRITE_CLAUSES[statement.type]
  if (!allowed || !('clauses' in statement)) return refusal('not_write', `a declared write is one INSERT, UPDATE or DELETE (got ${statementName(statement)})`)
  const n: Numbering = { namedParameters: true, parameters: [], scoped: [], edits: [] }
  let table: string | undefined
  let where: Node | undefined
  let insertColumns: Node | undefined
  let insertRow: Node | undefined
  try {
    for (const clause of statement.clauses as Node[]) {
      if (!allowed.has(clause.type)) throw unsupported(clause)
      if (clause.type === 'insert_clause' || clause.type === 'update_clause' || clause.type === 'delete_clause') {
        if (clause.modifiers.length > 0) throw unsupported(clause.modifiers[0]!)
        // OR REPLACE / REPLACE INTO delete a conflicting row, which may be outside the caller's scope
        if (('orAction' in clause && clause.orAction !== undefined) || (clause.type === 'insert_clause' && clause.insertKw.name === 'REPLACE')) {
          throw new Refused('unsupported_syntax', 'a declared write takes no conflict clause (OR REPLACE, OR IGNORE, REPLACE INTO, ...)')
        }
        const target = clause.type === 'insert_clause' ? clause.table : clause.tables.items.length === 1 ? clause.tables.items[0]! : undefined
        table = writeTarget(target)
        if (clause.type === 'insert_clause') {
          if (clause.columns?.type !== 'paren_expr' || clause.columns.expr.type !== 'list_expr') throw new Refused('unsupported_syntax', 'a declared INSERT names its columns: INSERT INTO t (a, b) VALUES (:a, :b)')
          insertColumns = clause.columns.expr
        }
      } else if (clause.type === 'values_clause') {
        const rows = clause.values.items
        if (rows.length !== 1 || rows[0]!.type !== 'paren_expr' || rows[0]!.expr.type !== 'list_expr') throw new Refused('unsupported_syntax', 'a declared INSERT inserts one row: VALUES (...)')
        insertRow = rows[0]!.expr
        walkWriteExpression(clause.values, n)
      } else {
        if (clause.type === 'where_clause') where = clause.expr
        walkWriteExpression(clause, n)
      }
    }
  } catch (err) {
    if (err instanceof Refused) return refusal(err.code, err.message)
    throw err
  }
  if (table === undefined) return refusal('not_write', 'the statement names no table')
  const column = rowScope.get(table)
  if (column !== undefined) {
    n.scoped.push(table)
    const value = () => `?${scopeParameter(table!, n)}`
    if (insertColumns?.type === 'list_expr' && insertRow?.type === 'list_expr') {
      if (insertColumns.items.some((c) => c.type === 'identifier' && asciiLower(c.name) === asciiLower(column))) {
        return refusal('unsupported_syntax', `the INSERT sets ${column}, which the row scope of ${table} sets to the caller's value: leave it out`)
      }
      const [, columnsEnd] = rangeOf(insertColumns)
      const [, rowEnd] = rangeOf(insertRow)
      n.edits.push({ start: columnsEnd, end: columnsEnd, render: () => `, "${column}"` })
      n.edits.push({ start: rowEnd, end: rowEnd, render: () => `, ${value()}` })
    } else if (where) {
      const [start, end] = rangeOf(where)
      n.edits.push({ start, end: start, render: () => '(' })
      n.edits.push({ start: end, end, render: () => `) AND "${column}" = ${value()}` })
    } else {
      const [, end] = rangeOf(statement)
      n.edits.push({ start: end, end, render: () => ` WHERE "${column}" = ${value()}` })
    }
  }
  const [start, end] = rangeOf(statement)
  return { ok: true, statement: applyEdits(sql, start, end, n), table, parameters: n.parameters, scoped: n.scoped }
}

function writeTarget(node: Node | undefined): string {
  let name: string | undefined
  if (node?.type === 'identifier') name = node.name
  else if (node?.type === 'member_expr' && node.object.type === 'identifier' && asciiLower(node.object.name) === 'main' && node.property.type === 'identifier') name = node.property.name
  if (name === undefined) throw new Refused('unsupported_syntax', 'a declared write names one table, as <table> or main.<table>')
  const table = asciiLower(name)
  if (isProtectedTable(table)) throw new Refused('table_not_allowed', `table ${clip(name)} cannot be written`)
  return table
}

/** The expressions of a write: parameters noted, functions from the allow-list, no subquery. */
function walkWriteExpression(node: Node, n: Numbering): void {
  for (const value of Object.values(node)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (!isNode(item)) continue
      if (item.type === 'select_stmt' || item.type === 'compound_select_stmt') throw new Refused('unsupported_syntax', 'a declared write may not contain a subquery')
      if (item.type === 'func_call' && !(item.name.type === 'identifier' && FUNCTIONS.has(asciiLower(item.name.name)))) {
        throw new Refused('function_not_allowed', `function ${clip(item.name.type === 'identifier' ? item.name.name : '(qualified)')} is not allowed`)
      }
      if (item.type === 'parameter') noteParameter(item, n)
      else walkWriteExpression(item, n)
    }
  }
}

// ---------------------------------------------------------------------------
// Helpers

function rangeOf(node: Node): [number, number] {
  if (!node.range) throw new Error('guard: the parser gave a node without its range')
  return node.range
}

function textOf(node: Node, ctx: WalkContext): string {
  const [start, end] = rangeOf(node)
  return ctx.query.slice(start, end)
}

function isNode(value: unknown): value is Node {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'
}

function isInOperator(operator: unknown): boolean {
  const last = Array.isArray(operator) ? operator[operator.length - 1] : operator
  return isNode(last) && last.type === 'keyword' && last.name === 'IN'
}

function tableFunction(node: NodeOf<'func_call'>): Refused {
  const fn = node.name as Node
  const name = fn.type === 'identifier' ? fn.name : fn.type === 'string_literal' ? fn.value : '(qualified name)'
  return new Refused('table_function_not_allowed', `table-valued function ${clip(name)} is not allowed; select from the queryable tables`)
}

/**
 * Table aliases and CTE names appear verbatim in SQLite's query plan, which
 * the work budget (plan-budget.ts) reads: a quoted name with spaces or
 * brackets could forge a plan line, so only plain identifiers are allowed.
 */
function checkPlainName(name: string, what: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new Refused('unsupported_syntax', `${what} must be a plain name (letters, digits and _, not starting with a digit); ${clip(JSON.stringify(name))} is not`)
  }
}

function unsupported(node: Node): Refused {
  const what = node.type.replace(/_/g, ' ')
  return new Refused('unsupported_syntax', `${what} is not supported in execute_query; use a plain SELECT`)
}

function statementName(node: Node): string {
  if (node.type === 'insert_stmt') {
    const clause = node.clauses.find((c) => c.type === 'insert_clause')
    return clause?.type === 'insert_clause' ? clause.insertKw.name : 'INSERT'
  }
  if (node.type === 'select_stmt' || node.type === 'compound_select_stmt') return 'SELECT'
  return STATEMENT_NAMES[node.type] ?? node.type.replace(/_stmt$/, '').replace(/_/g, ' ').toUpperCase()
}

/** SQLite folds identifier case for ASCII letters only; so do we. */
function asciiLower(name: string): string {
  return name.replace(/[A-Z]+/g, (s) => s.toLowerCase())
}

/** Echo user-supplied names safely: bounded length, printable. */
function clip(text: string): string {
  const printable = text.replace(/[^\x20-\x7e\u00a0-\uffff]/g, '?')
  return printable.length > 64 ? `${printable.slice(0, 61)}...` : printable
}

function refusal(code: GuardCode, message: string): GuardRefusal {
  return { ok: false, code, message }
}

/**
 * Offset of the first non-ASCII character that is not inside a '...' string literal or a
 * "...", `...`, [...] quoted identifier (scanned the way SQLite's tokenizer does), else -1.
 * Comments get no exemption: outside quotes only ASCII is allowed, so the guard's parser and
 * SQLite cannot disagree about Unicode whitespace or look-alike letters.
 */
export function firstNonAsciiOutsideQuotes(query: string): number {
  let i = 0
  while (i < query.length) {
    const c = query[i]!
    const close = c === "'" ? "'" : c === '"' ? '"' : c === '`' ? '`' : c === '[' ? ']' : null
    if (close !== null) {
      i++
      while (i < query.length) {
        if (query[i] === close) {
          // doubled quote is an escaped quote, except inside [...]
          if (close !== ']' && query[i + 1] === close) { i += 2; continue }
          break
        }
        i++
      }
      i++
      continue
    }
    if (query.charCodeAt(i) > 0x7f) return i
    i++
  }
  return -1
}
