// The audit log's hash chain. Pure: Web Crypto only, no D1, no Hono; runs in
// workerd, Node 20 and the CLI scripts alike.
//
// What it guarantees:
//   * `canonicalRow` is a deterministic, injective encoding of every column of
//     an audit row except `hash`, in 0001_initial.sql's order, so a row's hash
//     covers all of it (including `seq` and `prev_hash`).
//   * `rowHash(prev, row)` = lowercase hex SHA-256 of the UTF-8 bytes of
//     `prev + "\n" + canonicalRow(row)`: that is what "prev_hash ‖ canonical
//     row" means everywhere in this project (migrations/0001_initial.sql, audit:verify).
//   * `sealRow` only produces rows that survive a D1 round trip unchanged
//     (integers, well-formed UTF-16 strings, ISO-8601 UTC `ts`), so a row
//     read back hashes to the value that was written.
//   * `verifyChain` walks rows in ascending `seq` from a trusted start (the
//     genesis, or the pruning checkpoint) and names the FIRST bad seq: an
//     edited row (hash_mismatch), a deleted row (gap), a moved or forged row
//     (prev_hash_mismatch), rows out of order or duplicated (order).
//     `verifyFromRows` wraps it for raw rows and prints the audit:verify line.
//
// What it cannot guarantee: someone with write access to D1 who rewrites a
// row AND recomputes every later hash (or deletes the newest rows) produces a
// valid chain. Detecting that needs an anchor kept elsewhere (for example the
// head seq/hash written to the Worker's logs after each append).
import { sha256Hex } from '../digest.ts'

/**
 * Every value the `outcome` column accepts (the CHECK constraint of
 * 0002_confirmation_outcomes.sql). The last four are the rounds of a
 * confirmed call (README "Confirmation"): the user was asked, confirmed (the
 * change was applied), declined, or answered after the request state expired.
 */
export const AUDIT_OUTCOMES = ['ok', 'tool_error', 'invalid_input', 'denied', 'rate_limited', 'timeout', 'error', 'confirmation_requested', 'confirmed', 'declined', 'expired'] as const
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number]

/** The outcomes that are refusals: compact rows, counted against the policy's refusal budget. */
export const REFUSAL_OUTCOMES = ['denied', 'invalid_input', 'rate_limited'] as const satisfies readonly AuditOutcome[]
export type RefusalOutcome = (typeof REFUSAL_OUTCOMES)[number]

export function isRefusal(outcome: AuditOutcome): outcome is RefusalOutcome {
  return (REFUSAL_OUTCOMES as readonly string[]).includes(outcome)
}

/**
 * One audited `tools/call`: every column of `audit_log` except the chain
 * columns (`seq`, `prev_hash`, `hash`), which `sealRow` adds. Column meanings
 * are documented in migrations/0001_initial.sql. Nullable columns may be omitted (stored as
 * NULL).
 */
export interface AuditRecord {
  ts: string
  request_id: string
  sub: string
  token_id: string
  client_name?: string | null
  client_version?: string | null
  method: string
  tool?: string | null
  outcome: AuditOutcome
  http_status: number
  duration_ms: number
  input_json?: string | null
  output_bytes?: number | null
  output_sha256?: string | null
  output_excerpt?: string | null
  error_code?: string | null
  /** Refusals only: UTF-8 bytes of the whole redacted arguments JSON (input_json keeps an excerpt). */
  input_bytes?: number | null
  /** Refusals only: hex SHA-256 of the whole REDACTED arguments JSON. */
  input_sha256?: string | null
  /** Aggregate rows only: how many refusals this row stands for (>= 1). */
  count?: number | null
  /** Aggregate rows only: request_id of the first and the last refusal it counts. */
  first_request_id?: string | null
  last_request_id?: string | null
}

/** A row of `audit_log` as stored: the record plus its place in the chain. */
export interface AuditRow extends AuditRecord {
  seq: number
  prev_hash: string
  hash: string
}

/** A position in the chain: the seq and hash of the row a new row follows. */
export interface ChainHead {
  seq: number
  hash: string
}

/** `prev_hash` of the very first row (seq 1). */
export const GENESIS_HASH = '0'.repeat(64)
export const GENESIS: ChainHead = Object.freeze({ seq: 0, hash: GENESIS_HASH })

/** Columns of `audit_log` in 0001_initial.sql's order, `hash` excluded. */
export const CANONICAL_COLUMNS = [
  'seq', 'ts', 'request_id', 'sub', 'token_id', 'client_name', 'client_version', 'method', 'tool',
  'outcome', 'http_status', 'duration_ms', 'input_json', 'output_bytes', 'output_sha256',
  'output_excerpt', 'error_code', 'prev_hash',
] as const satisfies readonly (keyof AuditRow)[]

/**
 * Columns added after the chain format was fixed (0001_initial.sql lists them after
 * `chain`). They enter the canonical form only when non-null, after
 * `prev_hash`, in this order: a row that has none of them hashes exactly as
 * it did before they existed.
 */
export const OPTIONAL_CANONICAL_COLUMNS = [
  'input_bytes', 'input_sha256', 'count', 'first_request_id', 'last_request_id',
] as const satisfies readonly (keyof AuditRow)[]

/** Every column of `audit_log` except `chain` (the INSERT and SELECT order). */
export const AUDIT_COLUMNS = [...CANONICAL_COLUMNS, 'hash', ...OPTIONAL_CANONICAL_COLUMNS] as const

/**
 * The canonical text of a row: a JSON object whose keys are the columns of
 * `CANONICAL_COLUMNS`, in that order, each present exactly once, followed by
 * those of `OPTIONAL_CANONICAL_COLUMNS` whose value is not null, in that
 * order (a key absent there means null, so the encoding stays injective). Absent
 * (undefined) values are written as `null`; strings as JSON strings (ES2019
 * well-formed JSON.stringify); numbers as JSON numbers, which for the safe
 * integers `sealRow` admits are plain decimal digits. Example:
 *   {"seq":1,"ts":"2026-01-01T00:00:00.000Z","request_id":"r1",...,"prev_hash":"000…0"}
 */
export function canonicalRow(row: Omit<AuditRow, 'hash'>): string {
  const ordered: Record<string, unknown> = {}
  for (const column of CANONICAL_COLUMNS) ordered[column] = row[column] ?? null
  for (const column of OPTIONAL_CANONICAL_COLUMNS) {
    const value = row[column]
    if (value !== undefined && value !== null) ordered[column] = value
  }
  return JSON.stringify(ordered)
}

/** Lowercase hex SHA-256 of UTF-8(`prevHash + "\n" + canonicalRow(row)`). */
export async function rowHash(prevHash: string, row: Omit<AuditRow, 'hash'>): Promise<string> {
  return sha256Hex(`${prevHash}\n${canonicalRow(row)}`)
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/
const HEX64 = /^[0-9a-f]{64}$/
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/** Replaces lone UTF-16 surrogates by U+FFFD, so the string survives UTF-8 storage. */
function wellFormed(value: string): string {
  return value.replace(LONE_SURROGATE, '\uFFFD')
}

function requiredText(record: AuditRecord, column: 'ts' | 'request_id' | 'sub' | 'token_id' | 'method'): string {
  const value: unknown = record[column]
  if (typeof value !== 'string') throw new TypeError(`audit record: "${column}" must be a string`)
  return wellFormed(value)
}

type OptionalTextColumn = 'client_name' | 'client_version' | 'tool' | 'input_json' | 'output_sha256' | 'output_excerpt' | 'error_code'
  | 'input_sha256' | 'first_request_id' | 'last_request_id'

function optionalText(record: AuditRecord, column: OptionalTextColumn): string | null {
  const value: unknown = record[column]
  if (value === undefined || value === null) return null
  if (typeof value !== 'string') throw new TypeError(`audit record: "${column}" must be a string or null`)
  return wellFormed(value)
}

function integer(value: unknown, column: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new TypeError(`audit record: "${column}" must be an integer >= ${min}`)
  }
  return value
}

/**
 * Validates and normalises a record into the exact values D1 will store:
 * absent nullable columns become null, lone surrogates become U+FFFD,
 * `duration_ms` is rounded to an integer and clamped at 0. Throws a
 * TypeError naming the column when a value cannot be stored faithfully
 * (wrong type, unknown outcome, `ts` not ISO-8601 UTC, non-integer number).
 */
export function normalizeRecord(record: AuditRecord): AuditRecord {
  const ts = requiredText(record, 'ts')
  if (!ISO_UTC.test(ts)) throw new TypeError('audit record: "ts" must be ISO-8601 UTC, e.g. new Date().toISOString()')
  if (!(AUDIT_OUTCOMES as readonly string[]).includes(record.outcome)) {
    throw new TypeError(`audit record: "outcome" must be one of ${AUDIT_OUTCOMES.join(', ')}`)
  }
  const duration: unknown = record.duration_ms
  if (typeof duration !== 'number' || !Number.isFinite(duration)) {
    throw new TypeError('audit record: "duration_ms" must be a finite number')
  }
  const outputBytes = record.output_bytes ?? null
  const inputBytes = record.input_bytes ?? null
  const count = record.count ?? null
  return {
    ts,
    request_id: requiredText(record, 'request_id'),
    sub: requiredText(record, 'sub'),
    token_id: requiredText(record, 'token_id'),
    client_name: optionalText(record, 'client_name'),
    client_version: optionalText(record, 'client_version'),
    method: requiredText(record, 'method'),
    tool: optionalText(record, 'tool'),
    outcome: record.outcome,
    http_status: integer(record.http_status, 'http_status', 100),
    duration_ms: Math.max(0, Math.round(duration)),
    input_json: optionalText(record, 'input_json'),
    output_bytes: outputBytes === null ? null : integer(outputBytes, 'output_bytes', 0),
    output_sha256: optionalText(record, 'output_sha256'),
    output_excerpt: optionalText(record, 'output_excerpt'),
    error_code: optionalText(record, 'error_code'),
    input_bytes: inputBytes === null ? null : integer(inputBytes, 'input_bytes', 0),
    input_sha256: optionalText(record, 'input_sha256'),
    count: count === null ? null : integer(count, 'count', 1),
    first_request_id: optionalText(record, 'first_request_id'),
    last_request_id: optionalText(record, 'last_request_id'),
  }
}

/**
 * Places a record after `head` in the chain: seq = head.seq + 1,
 * prev_hash = head.hash, hash = rowHash(prev_hash, row). The record is
 * normalised first (see `normalizeRecord`).
 */
export async function sealRow(record: AuditRecord, head: ChainHead): Promise<AuditRow> {
  const seq = integer(head.seq, 'head.seq', 0) + 1
  if (!HEX64.test(head.hash)) throw new TypeError('audit chain: head.hash must be 64 lowercase hex digits')
  // normalizeRecord lists the columns in schema order, so the row's keys are too.
  const row: Omit<AuditRow, 'hash'> = { seq, ...normalizeRecord(record), prev_hash: head.hash }
  return { ...row, hash: await rowHash(head.hash, row) }
}

const TEXT_COLUMNS = new Set<string>([
  'ts', 'request_id', 'sub', 'token_id', 'client_name', 'client_version', 'method', 'tool', 'outcome', 'input_json',
  'output_sha256', 'output_excerpt', 'error_code', 'prev_hash', 'hash', 'input_sha256', 'first_request_id', 'last_request_id',
])

/**
 * Reads a row as D1 (or `wrangler d1 execute --json`) returns it into an
 * AuditRow without trusting it: a value of the wrong type for its column is
 * replaced by a marker string (`"<invalid:number>"` …) that no sealed row
 * contains, so the row then fails verification as a hash mismatch instead of
 * crashing the verifier. A non-integer `seq` becomes NaN (reported as
 * `order`).
 */
export function toAuditRow(raw: object): AuditRow {
  const source = raw as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const column of AUDIT_COLUMNS) {
    const value = source[column]
    if (column === 'seq') {
      out[column] = typeof value === 'number' && Number.isSafeInteger(value) ? value : Number.NaN
    } else if (value === null || value === undefined) {
      out[column] = null
    } else if (TEXT_COLUMNS.has(column)) {
      out[column] = typeof value === 'string' ? value : `<invalid:${typeof value}>`
    } else {
      out[column] = typeof value === 'number' ? value : `<invalid:${typeof value}>`
    }
  }
  return out as unknown as AuditRow
}

export type ChainFailureReason = 'hash_mismatch' | 'gap' | 'prev_hash_mismatch' | 'order'

export type VerifyResult =
  | { ok: true; count: number; last: ChainHead }
  | { ok: false; seq: number; reason: ChainFailureReason; detail: string }

/**
 * Verifies rows given in ascending `seq`, starting after `start` (GENESIS,
 * or the checkpoint `{ seq: last_seq, hash: last_hash }` after pruning).
 * For each row, in this order:
 *   order              seq is not an integer, or not greater than the previous
 *                      seq (duplicate, or rows delivered out of order)
 *   gap                seq skips ahead: the missing seq is reported (a deleted row)
 *   prev_hash_mismatch prev_hash is not the previous row's hash (a row moved,
 *                      swapped, or its prev_hash forged)
 *   hash_mismatch      hash is not rowHash(prev_hash, row) (a row edited)
 * Stops at the first failure. `last` is the verified head (= start when no
 * rows). Not detectable: deletion of the newest rows (see module header).
 */
export async function verifyChain(
  rows: AsyncIterable<AuditRow> | Iterable<AuditRow>,
  start: ChainHead,
): Promise<VerifyResult> {
  let expected: ChainHead = { seq: start.seq, hash: start.hash }
  let count = 0
  for await (const row of rows) {
    const next = expected.seq + 1
    if (!Number.isSafeInteger(row.seq)) {
      return { ok: false, seq: next, reason: 'order', detail: `row after seq ${expected.seq} has a non-integer seq` }
    }
    if (row.seq <= expected.seq) {
      return { ok: false, seq: row.seq, reason: 'order', detail: `seq ${row.seq} came after seq ${expected.seq}` }
    }
    if (row.seq !== next) {
      const missing = row.seq - 1 === next ? `${next}` : `${next}..${row.seq - 1}`
      return { ok: false, seq: next, reason: 'gap', detail: `seq ${missing} missing; next row present is seq ${row.seq}` }
    }
    if (row.prev_hash !== expected.hash) {
      return {
        ok: false, seq: row.seq, reason: 'prev_hash_mismatch',
        detail: `prev_hash ${short(row.prev_hash)} is not the hash of seq ${expected.seq} (${short(expected.hash)})`,
      }
    }
    const computed = await rowHash(row.prev_hash, row)
    if (row.hash !== computed) {
      return {
        ok: false, seq: row.seq, reason: 'hash_mismatch',
        detail: `stored hash ${short(row.hash)} but the row's content hashes to ${short(computed)}`,
      }
    }
    expected = { seq: row.seq, hash: row.hash }
    count += 1
  }
  return { ok: true, count, last: expected }
}

function short(value: unknown): string {
  return typeof value === 'string' ? `${value.slice(0, 12)}…` : String(value)
}

/**
 * The verification report shared by `npm run audit:verify` and anything else
 * that reads raw rows (as D1 or `wrangler d1 execute --json` return them,
 * ascending seq): verifies from the raw checkpoint row
 * `{ last_seq, last_hash }`, or from the genesis when it is null, and returns
 * the one line to print:
 *   "audit chain OK: N rows (seq a..b)"
 *   "audit chain BROKEN at seq N: <reason> (<detail>)"
 * A malformed checkpoint is reported as broken (it is never trusted).
 */
export async function verifyFromRows(
  rows: Iterable<object> | AsyncIterable<object>,
  checkpoint: object | null,
): Promise<{ ok: boolean; message: string; result: VerifyResult }> {
  let start: ChainHead = GENESIS
  if (checkpoint) {
    const { last_seq: seq, last_hash: hash } = checkpoint as Record<string, unknown>
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || typeof hash !== 'string' || !HEX64.test(hash)) {
      const result: VerifyResult = {
        ok: false, seq: await firstSeq(rows), reason: 'prev_hash_mismatch',
        detail: `audit_checkpoint is malformed: last_seq=${String(seq)}, last_hash=${short(hash)}`,
      }
      return { ok: false, message: reportLine(result, start), result }
    }
    start = { seq, hash }
  }
  const result = await verifyChain(mapRows(rows), start)
  return { ok: result.ok, message: reportLine(result, start), result }
}

function reportLine(result: VerifyResult, start: ChainHead): string {
  if (!result.ok) return `audit chain BROKEN at seq ${result.seq}: ${result.reason} (${result.detail})`
  if (result.count === 0) return start.seq === 0 ? 'audit chain OK: 0 rows' : `audit chain OK: 0 rows (checkpoint at seq ${start.seq})`
  return `audit chain OK: ${result.count} rows (seq ${start.seq + 1}..${result.last.seq})`
}

async function* mapRows(rows: Iterable<object> | AsyncIterable<object>): AsyncIterable<AuditRow> {
  for await (const raw of rows) yield toAuditRow(raw)
}

async function firstSeq(rows: Iterable<object> | AsyncIterable<object>): Promise<number> {
  for await (const raw of rows) {
    const seq = toAuditRow(raw).seq
    return Number.isSafeInteger(seq) ? seq : 1
  }
  return 1
}
