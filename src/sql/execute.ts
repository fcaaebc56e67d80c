/**
 * Capped, read-only execution of a guarded query over D1.
 *
 *   1. guardQuery (src/sql/guard.ts) parses and checks the query and wraps it
 *      so at most maxRows + 1 rows come back;
 *   2. D1 runs the wrapped statement;
 *   3. defence in depth: if D1's result meta says anything was written
 *      (changed_db, rows_written, changes), the rows are withheld and a
 *      `write_incident` is returned for the caller to audit and alert on.
 *      The guard should make this impossible; this is the tripwire if it
 *      ever is not;
 *   4. the rows are capped: at most maxRows (truncated: 'rows' when the
 *      extra row came back), then at most maxBytes of JSON, dropping rows
 *      from the end (truncated: 'bytes', which wins when both apply).
 *
 * SQL errors raised by SQLite at run time ("no such column: foo") come back
 * as `{ kind: 'refused', code: 'sql_error' }` with one clean line: D1's
 * "D1_ERROR:" style prefixes and trailing SQLITE_* result codes stripped,
 * offsets translated back to the caller's query. Any other failure (network,
 * D1 outage) is rethrown for the tool boundary to report as an internal
 * error. Timeouts are the caller's concern (it races this with its signal).
 *
 * `columns` are the keys of the first row D1 returned (an empty result has
 * none: D1's `.all()` does not report column names without rows).
 */
import { guardQuery } from './guard.ts'

export interface ExecuteOptions {
  allowedTables: readonly string[]
  maxRows: number
  maxBytes: number
}

export type ExecuteResult =
  | {
      ok: true
      columns: string[]
      rows: Record<string, unknown>[]
      rowCount: number
      truncated: false | 'rows' | 'bytes'
      bytes: number
    }
  | { ok: false; kind: 'refused'; code: string; message: string }
  | { ok: false; kind: 'write_incident'; meta: { changed_db: boolean; rows_written: number; changes: number } }

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
  const guard = guardQuery(query, { allowedTables: opts.allowedTables, maxRows: opts.maxRows })
  if (!guard.ok) return { ok: false, kind: 'refused', code: guard.code, message: guard.message }

  let result: D1Result<Record<string, unknown>>
  try {
    result = await db.prepare(guard.sql).all<Record<string, unknown>>()
  } catch (err) {
    const message = sqlErrorMessage(err, guard.sql, query)
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
  const columns = all[0] ? Object.keys(all[0]) : []
  let truncated: false | 'rows' | 'bytes' = all.length > opts.maxRows ? 'rows' : false
  const candidates = truncated ? all.slice(0, opts.maxRows) : all

  // JSON of the kept rows: "[" + rows joined by "," + "]"
  let bytes = 2
  let kept = 0
  for (const row of candidates) {
    const size = utf8Length(JSON.stringify(row)) + (kept > 0 ? 1 : 0)
    if (bytes + size > opts.maxBytes) {
      truncated = 'bytes'
      break
    }
    bytes += size
    kept++
  }
  const rows = kept === candidates.length ? candidates : candidates.slice(0, kept)
  return { ok: true, columns, rows, rowCount: rows.length, truncated, bytes }
}

/**
 * One useful line from a D1/SQLite error, or undefined when the error is not
 * an SQL error (then it is not ours to describe).
 */
export function sqlErrorMessage(err: unknown, executed: string, original: string): string | undefined {
  const raw = err instanceof Error ? err.message : typeof err === 'string' ? err : ''
  if (!/\bD1_[A-Z_]*ERROR\b|\bSQLITE_[A-Z]+\b/.test(raw)) return undefined
  let message = raw.split(/\r?\n/)[0] ?? ''
  message = message
    .replace(/^(?:\s*(?:Error|D1_[A-Z_]+)\s*:\s*)+/, '')
    .replace(/(?::\s*SQLITE_[A-Z_]+(?:\s*\[?\w*\]?)?)+\s*$/, '')
    .trim()
  // SQLite reports offsets into the statement it ran, the wrapped one:
  // translate them to the caller's text, or drop them.
  const bodyStart = executed.indexOf('\n') + 1
  const body = executed.slice(bodyStart, executed.lastIndexOf('\n)'))
  const start = original.indexOf(body)
  message = message.replace(/\s*\bat offset (\d+)/, (_, n: string) => {
    const offset = Number(n) - bodyStart + start
    return start >= 0 && offset >= start && offset <= start + body.length ? ` at offset ${offset}` : ''
  })
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
