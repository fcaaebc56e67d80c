/**
 * The second, independent gate of execute_query: ask SQLite itself which
 * b-trees a statement opens, instead of trusting our own parse of it.
 *
 * `EXPLAIN <statement>` compiles the statement without running it and lists
 * its VDBE program. Every persistent table or index is opened by an
 * OpenRead / OpenWrite / ReopenIdx instruction whose p2 is the b-tree's root
 * page and p3 the database (0 = main). The gate refuses unless
 *   - every such open is a read (OpenRead / ReopenIdx; OpenWrite never),
 *     of database 0, with a literal root page (p5 without OPFLAG_P2ISREG),
 *     and that root page belongs to an allowed table or one of its indexes;
 *   - no instruction opens a virtual table (VOpen and friends: FTS, pragma
 *     and json table functions) or changes the schema or the data
 *     (VUpdate, VCreate, VDestroy, ParseSchema, CreateBtree, Destroy, Clear,
 *     Vacuum, Insert / Delete on a persistent cursor cannot occur without
 *     OpenWrite, which is refused);
 *   - EXPLAIN itself succeeds: any failure refuses (fail closed).
 * Root pages are resolved by the SERVER's own query of sqlite_schema (never
 * the user's), per call: one small read, so no cache can go stale after a
 * migration.
 *
 * This module does not import the SQL parser: it works on SQLite's view only.
 */

/** Instructions that open a persistent b-tree: p2 = root page, p3 = database. */
const BTREE_OPENS: ReadonlySet<string> = new Set(['OpenRead', 'ReopenIdx'])
/** Instructions that never belong in a read of the business tables. */
const FORBIDDEN: ReadonlySet<string> = new Set([
  'OpenWrite',
  'VOpen',
  'VFilter',
  'VUpdate',
  'VCreate',
  'VDestroy',
  'VBegin',
  'VRename',
  'ParseSchema',
  'CreateBtree',
  'Destroy',
  'Clear',
  'Vacuum',
  'IncrVacuum',
  'SqlExec',
  'DropTable',
  'DropIndex',
  'DropTrigger',
  'LoadAnalysis',
])
/** sqliteInt.h OPFLAG_P2ISREG (0x10) on OpenRead/OpenWrite: p2 is a register holding the root page, not the page. */
const OPFLAG_P2ISREG = 0x10

export type ExplainGateResult = { ok: true; opened: number[] } | { ok: false; message: string; cause?: unknown }

interface ExplainRow {
  opcode: unknown
  p2: unknown
  p3: unknown
  p5: unknown
}

/** `sql` prepared with its bound values (the row scope's), or as it is when it has none. */
export function prepareBound(db: Pick<D1Database, 'prepare'>, sql: string, params: readonly (string | number)[]): D1PreparedStatement {
  return params.length > 0 ? db.prepare(sql).bind(...params) : db.prepare(sql)
}

/**
 * Refuses `sql` unless SQLite's own plan opens only b-trees of
 * `allowedTables` (and their indexes) in the main database, read-only.
 */
export async function explainGate(
  db: Pick<D1Database, 'prepare'>,
  sql: string,
  allowedTables: readonly string[],
  params: readonly (string | number)[] = [],
): Promise<ExplainGateResult> {
  let allowed: Set<number>
  let program: ExplainRow[]
  try {
    const [schema, plan] = await Promise.all([
      db.prepare('SELECT tbl_name, rootpage FROM sqlite_schema WHERE rootpage > 0').all<{ tbl_name: string; rootpage: number }>(),
      prepareBound(db, `EXPLAIN ${sql}`, params).all<ExplainRow>(),
    ])
    const names = new Set(allowedTables.map((t) => t.toLowerCase()))
    allowed = new Set(schema.results.filter((r) => names.has(String(r.tbl_name).toLowerCase())).map((r) => Number(r.rootpage)))
    program = plan.results
  } catch (cause) {
    return { ok: false, message: 'SQLite could not verify which tables the query reads (EXPLAIN failed)', cause }
  }
  if (program.length === 0) return { ok: false, message: 'SQLite returned no plan for the query (EXPLAIN returned nothing)' }
  const opened: number[] = []
  for (const row of program) {
    const opcode = String(row.opcode)
    if (FORBIDDEN.has(opcode)) {
      return { ok: false, message: `SQLite's plan for the query uses ${opcode}: only reads of the business tables are allowed` }
    }
    if (!BTREE_OPENS.has(opcode)) continue
    const root = Number(row.p2)
    const database = Number(row.p3)
    const p5 = Number(row.p5) || 0
    if (database !== 0 || (p5 & OPFLAG_P2ISREG) !== 0 || !Number.isInteger(root) || !allowed.has(root)) {
      return { ok: false, message: "SQLite's plan for the query reads a table that is not queryable; only the business tables are" }
    }
    opened.push(root)
  }
  return { ok: true, opened }
}
