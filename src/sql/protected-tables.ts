/**
 * Tables no query and no row-scope rule may name, whatever the policy says:
 * the audit log, SQLite's and D1's own tables, and the shadow tables of
 * FTS5 / R*Tree virtual tables (`search_index` and its `_data`, `_idx`,
 * `_content`, ... tables). Lower-case names.
 */
const PROTECTED_TABLE =
  /^(?:audit_|sqlite_|search_index|d1_|_cf_)|_(?:data|idx|content|docsize|config|segments|segdir|stat|node|rowid|parent)$/

export function isProtectedTable(name: string): boolean {
  return PROTECTED_TABLE.test(name)
}
