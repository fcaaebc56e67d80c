// Row scope: which rows of a table a caller may read, one rule per table,
// bound to a claim of the caller's token:
//
//   ROW_SCOPE              orders.tenant_id=claim.tenant, customers.account_manager=claim.sub
//   ROW_SCOPE_EXEMPT_ROLES admin
//
// Every read of a scoped table (execute_query, declared tools, the
// hand-written tools' statements, the search index's documents) sees only
// the rows whose column equals the caller's claim, as if the table held
// nothing else: SQL reads it through `scopedSource`, a filtered subquery with
// a bound parameter. A caller whose token lacks the claim is refused when a
// statement reads that table; a caller with an exempt role reads every row.
// Pure: parsed once from configuration (config.ts), applied per call.
import { claimValue, type Principal } from '../auth/principal.ts'
import { isProtectedTable } from '../sql/protected-tables.ts'

export interface RowScopeRule {
  /** lower case, a plain identifier */
  table: string
  column: string
  /** the claim path as written after `claim.` (`tenant`, `sub`, `org.id`) */
  claim: string
}

export interface RowScope {
  rules: ReadonlyMap<string, RowScopeRule>
  exemptRoles: ReadonlySet<string>
}

/** What one caller may read: per scoped table, its column and the caller's value (undefined: the token lacks the claim). */
export type RowFilter = ReadonlyMap<string, { column: string; claim: string; value: string | number | undefined }>

const PLAIN = /^[A-Za-z_][A-Za-z0-9_]*$/
const RULE = /^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*=\s*claim\.(\S+)$/

/** A bad ROW_SCOPE or ROW_SCOPE_EXEMPT_ROLES: the setting, and what is wrong with it. */
export class RowScopeError extends Error {
  override name = 'RowScopeError'
  constructor(
    readonly setting: 'ROW_SCOPE' | 'ROW_SCOPE_EXEMPT_ROLES',
    readonly problem: string,
  ) {
    super(`${setting}: ${problem}`)
  }
}

/**
 * Parses ROW_SCOPE (comma-separated `table.column=claim.<path>`) and
 * ROW_SCOPE_EXEMPT_ROLES (comma-separated policy roles); throws a
 * RowScopeError naming the setting and the problem.
 */
export function parseRowScope(rules: string | undefined, exempt: string | undefined, policyRoles: ReadonlySet<string>): RowScope {
  const parsed = new Map<string, RowScopeRule>()
  for (const entry of (rules ?? '').split(',').map((e) => e.trim()).filter(Boolean)) {
    const match = RULE.exec(entry)
    if (!match) throw new RowScopeError('ROW_SCOPE', `"${entry}" is not table.column=claim.<name>`)
    const table = match[1]!.toLowerCase()
    if (isProtectedTable(table)) throw new RowScopeError('ROW_SCOPE', `${table} is not a business table`)
    if (parsed.has(table)) throw new RowScopeError('ROW_SCOPE', `${table} has more than one rule`)
    const claim = match[3]!
    if (claim.split('.').some((segment) => segment === '')) throw new RowScopeError('ROW_SCOPE', `"${claim}" is not a claim path`)
    parsed.set(table, { table, column: match[2]!, claim })
  }
  const roles = new Set<string>()
  for (const role of (exempt ?? '').split(',').map((r) => r.trim()).filter(Boolean)) {
    if (!policyRoles.has(role)) throw new RowScopeError('ROW_SCOPE_EXEMPT_ROLES', `${role} is not a role of the policy`)
    roles.add(role)
  }
  if (roles.size > 0 && parsed.size === 0) throw new RowScopeError('ROW_SCOPE_EXEMPT_ROLES', 'is set but ROW_SCOPE has no rule')
  return { rules: parsed, exemptRoles: roles }
}

/** The claim paths the rules read, for the token verifier to keep. */
export function scopeClaims(scope: RowScope): string[] {
  return [...new Set([...scope.rules.values()].map((r) => r.claim))]
}

/** Why a call bound to a claim the token lacks is refused; `use` says what binds it (see `scopedUse`). */
export function missingClaimText(claim: string, use: string): string {
  return `this call needs the ${claim} claim of your token (${use}), and the token has none usable (a string or a number); ask for a token that carries it`
}

/** The `use` of a row-scope rule's claim. */
export function scopedUse(table: string): string {
  return `rows of ${table} are limited by it`
}

const UNSCOPED: RowFilter = new Map()

/** The caller's filter: empty when no rule applies or one of its roles is exempt. */
export function rowFilterFor(scope: RowScope, principal: Pick<Principal, 'sub' | 'roles' | 'claims'>): RowFilter {
  if (scope.rules.size === 0 || principal.roles.some((role) => scope.exemptRoles.has(role))) return UNSCOPED
  return new Map([...scope.rules.values()].map((r) => [r.table, { column: r.column, claim: r.claim, value: claimValue(principal, r.claim) }]))
}

/** The table columns a filter maps (table → column), for the SQL guard's rewrite. */
export function filterColumns(filter: RowFilter): ReadonlyMap<string, string> {
  return new Map([...filter].map(([table, f]) => [table, f.column]))
}

export type ScopeValues = { ok: true; values: (string | number)[] } | { ok: false; table: string; claim: string }

/** The bound values for `tables` (in their parameter order), or the first table whose claim the token lacks. */
export function scopeValues(filter: RowFilter, tables: readonly string[]): ScopeValues {
  const values: (string | number)[] = []
  for (const table of tables) {
    const f = filter.get(table)
    if (!f) throw new Error(`row scope: no filter for ${table}`)
    if (f.value === undefined) return { ok: false, table, claim: f.claim }
    values.push(f.value)
  }
  return { ok: true, values }
}

/**
 * The one SQL form of a scoped read: `table` as a subquery holding only the
 * rows whose `column` equals bound parameter ?`parameter`. SQLite flattens
 * it into the outer query, so an index on the column serves it.
 */
export function scopedSource(table: string, column: string, parameter: number): string {
  if (!PLAIN.test(table) || !PLAIN.test(column)) throw new Error('row scope: table and column must be plain names')
  return `(SELECT * FROM main.${table} WHERE "${column}" = ?${parameter})`
}
