// The audit log in D1: appending, committing a mutation together with its
// audit row, retention pruning, and reading the chains back. Every function
// works on one chain (`chain`, default 0: the audit_log.chain column);
// `listChains` names them all.
//
// What it guarantees:
//   * A chain never forks: each chain has ONE writer, its AuditSequencer
//     Durable Object (sequencer.ts), which seals rows in arrival order and
//     uses the helpers below. (chain, seq) is UNIQUE as a last line of defence.
//   * `commitWithAudit` runs the business statements and the audit INSERT in
//     ONE `db.batch()`, which D1 runs as one transaction: either the change
//     and its audit row are both stored, or neither is. A mutation whose
//     audit row cannot be written is not applied.
//   * `pruneAudit` deletes only a prefix of the chain (every row up to the
//     newest seq S such that all rows <= S are older than the cutoff) and, in
//     the same batch, records row S's seq and hash in `audit_checkpoint`, so
//     the chain still verifies from the checkpoint. It verifies what it is
//     about to delete first and refuses to destroy a broken chain's evidence.
//   * `readChain` yields every row in ascending seq, whatever its content
//     (malformed values are handed to the verifier, not skipped).
//
// Reads go through a 'first-primary' session when the binding supports
// sessions, so read replicas cannot serve a stale head.

import {
  AUDIT_COLUMNS, GENESIS, sealRow, toAuditRow, verifyChain,
  type AuditRecord, type AuditRow, type ChainHead, type VerifyResult,
} from './chain.ts'

/** What these functions need of a D1 binding: a D1Database or a D1DatabaseSession. */
export type AuditDb = Pick<D1Database, 'prepare' | 'batch'>

/** pruneAudit found the rows it was about to delete do not verify. */
export class AuditChainError extends Error {
  readonly code = 'audit_chain_broken'
  constructor(readonly result: Extract<VerifyResult, { ok: false }>) {
    super(`audit chain broken at seq ${result.seq}: ${result.reason} (${result.detail})`)
    this.name = 'AuditChainError'
  }
}

function primary(db: AuditDb): AuditDb {
  const maybe = db as AuditDb & { withSession?: (constraint: 'first-primary') => AuditDb }
  return typeof maybe.withSession === 'function' ? maybe.withSession('first-primary') : db
}

const HEAD_SQL = `SELECT seq, hash FROM (SELECT seq, hash FROM audit_log WHERE chain = ?1 ORDER BY seq DESC LIMIT 1)
UNION ALL
SELECT last_seq, last_hash FROM audit_checkpoint WHERE chain = ?1
ORDER BY 1 DESC LIMIT 1`

/**
 * The row a new audit row must follow: the newest row's seq/hash; when the
 * table is empty after pruning, the checkpoint; otherwise the genesis
 * {0, GENESIS_HASH}. One query.
 */
export async function chainHead(db: AuditDb, chain = 0): Promise<ChainHead> {
  const head = await db.prepare(HEAD_SQL).bind(chain).first<{ seq: unknown; hash: unknown }>()
  if (!head) return { ...GENESIS }
  if (typeof head.seq !== 'number' || typeof head.hash !== 'string') {
    throw new TypeError('audit log: the newest row (or checkpoint) has a malformed seq or hash; run audit:verify')
  }
  return { seq: head.seq, hash: head.hash }
}

/** The pruning checkpoint, or null when nothing was ever pruned. */
export async function readCheckpoint(db: AuditDb, chain = 0): Promise<ChainHead | null> {
  const row = await db.prepare('SELECT last_seq, last_hash FROM audit_checkpoint WHERE chain = ?1').bind(chain)
    .first<{ last_seq: unknown; last_hash: unknown }>()
  if (!row) return null
  return {
    seq: typeof row.last_seq === 'number' ? row.last_seq : Number.NaN,
    hash: typeof row.last_hash === 'string' ? row.last_hash : '',
  }
}

const PLACEHOLDERS = AUDIT_COLUMNS.map((_, i) => `?${i + 1}`)
const CHAIN_PARAM = `?${AUDIT_COLUMNS.length + 1}`
const INSERT_SQL = `INSERT INTO audit_log (${AUDIT_COLUMNS.join(', ')}, chain) VALUES (${PLACEHOLDERS.join(', ')}, ${CHAIN_PARAM})`
const IDEMPOTENT_INSERT_SQL = `${INSERT_SQL} ON CONFLICT DO NOTHING`
// Same row, but `ts` becomes NULL (violating NOT NULL, so the batch rolls
// back) unless the statement just before it changed at least one row.
const INSERT_IF_CHANGED_SQL = `INSERT INTO audit_log (${AUDIT_COLUMNS.join(', ')}, chain) SELECT ${
  PLACEHOLDERS.map((p, i) => (AUDIT_COLUMNS[i] === 'ts' ? `CASE WHEN changes() > 0 THEN ${p} END` : p)).join(', ')
}, ${CHAIN_PARAM}`
const NO_CHANGE_MESSAGE = 'NOT NULL constraint failed: audit_log.ts'

function bindRow(statement: D1PreparedStatement, row: AuditRow, chain: number): D1PreparedStatement {
  return statement.bind(...AUDIT_COLUMNS.map((column) => row[column] ?? null), chain)
}

/** The INSERT of one sealed row: every column bound as ?1..?19 in schema order, the chain as ?20. */
export function insertStatement(db: AuditDb, row: AuditRow, chain = 0): D1PreparedStatement {
  return bindRow(db.prepare(INSERT_SQL), row, chain)
}

/**
 * The same INSERT, a no-op (meta.changes = 0) when the chain already has a
 * row at this seq: the sequencer's drain can be retried without duplicating.
 */
export function idempotentInsertStatement(db: AuditDb, row: AuditRow, chain: number): D1PreparedStatement {
  return bindRow(db.prepare(IDEMPOTENT_INSERT_SQL), row, chain)
}

function messages(error: unknown): string {
  const parts: string[] = []
  for (let e: unknown = error, depth = 0; e && depth < 5; depth += 1) {
    parts.push(e instanceof Error ? e.message : String(e))
    e = e instanceof Error ? e.cause : undefined
  }
  return parts.join(' | ')
}

/** True when a requireChange batch was rolled back because its last business statement changed nothing. */
export function isNoChange(error: unknown): boolean {
  return messages(error).includes(NO_CHANGE_MESSAGE)
}

/**
 * The audit INSERT of a sealed row for a mutation batch: with `requireChange`
 * it fails (NOT NULL on ts, so D1 rolls the whole batch back) unless the
 * statement just before it changed at least one row.
 */
export function auditStatement(db: AuditDb, row: AuditRow, requireChange: boolean, chain = 0): D1PreparedStatement {
  return requireChange ? bindRow(db.prepare(INSERT_IF_CHANGED_SQL), row, chain) : insertStatement(db, row, chain)
}

/**
 * Appends one record: read head, seal, INSERT — one attempt, no retry. Only
 * safe with a single writer per chain (the AuditSequencer, or an offline
 * script): a concurrent writer makes it fail on the UNIQUE seq.
 */
export async function appendAudit(db: AuditDb, record: AuditRecord, chain = 0): Promise<AuditRow> {
  const conn = primary(db)
  const row = await sealRow(record, await chainHead(conn, chain))
  await insertStatement(conn, row, chain).run()
  return row
}

export type CommitResult =
  | { applied: true; row: AuditRow; results: D1Result[] }
  | { applied: false; reason: 'no_change' }

/**
 * Runs `statements` and the audit INSERT of `record` as one D1 batch (one
 * transaction): both are stored or neither is. Single writer only (see
 * appendAudit); in the Worker the AuditSequencer's commit does this.
 */
export async function commitWithAudit(
  db: AuditDb,
  statements: D1PreparedStatement[],
  record: AuditRecord,
  opts?: { requireChange?: boolean; chain?: number },
): Promise<CommitResult> {
  if (opts?.requireChange && statements.length === 0) {
    throw new TypeError('commitWithAudit: "requireChange" needs at least one statement')
  }
  const conn = primary(db)
  const chain = opts?.chain ?? 0
  const row = await sealRow(record, await chainHead(conn, chain))
  try {
    const results = await conn.batch([...statements, auditStatement(conn, row, opts?.requireChange ?? false, chain)])
    return { applied: true, row, results: results.slice(0, statements.length) }
  } catch (error) {
    if (opts?.requireChange && isNoChange(error)) return { applied: false, reason: 'no_change' }
    throw error
  }
}

const SELECT_ROWS = `SELECT ${AUDIT_COLUMNS.join(', ')} FROM audit_log WHERE chain = ?4 AND seq > ?1 AND (?3 IS NULL OR seq <= ?3) ORDER BY seq LIMIT ?2`

export interface ChainReadOptions {
  /** Which chain (audit_log.chain). Default 0. */
  chain?: number
  /** Rows per query. Default 500. */
  pageSize?: number
  /** Stop after this seq. */
  upToSeq?: number
}

/**
 * Every row of one chain in ascending seq, `pageSize` rows per query (keyset
 * paging on seq, so rows appended meanwhile are picked up at the end).
 */
export async function* readChain(db: AuditDb, opts: ChainReadOptions = {}): AsyncIterable<AuditRow> {
  const { chain = 0, pageSize = 500, upToSeq } = opts
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) throw new RangeError('readChain: "pageSize" must be a positive integer')
  // The raw seq of the last row read is the cursor, so even a row whose seq
  // was tampered into text is read (SQLite orders text after every integer).
  let cursor: unknown = Number.MIN_SAFE_INTEGER
  for (;;) {
    const statement = db.prepare(SELECT_ROWS).bind(cursor, pageSize, upToSeq ?? null, chain)
    const { results } = await statement.all<Record<string, unknown>>()
    for (const raw of results) yield toAuditRow(raw)
    if (results.length < pageSize) return
    cursor = results[results.length - 1]?.seq
  }
}

/** Verifies one whole stored chain from its checkpoint (or the genesis). */
export async function verifyStoredChain(db: AuditDb, opts: Omit<ChainReadOptions, 'upToSeq'> = {}): Promise<VerifyResult> {
  const start = (await readCheckpoint(db, opts.chain ?? 0)) ?? { ...GENESIS }
  return verifyChain(readChain(db, opts), start)
}

/** Every chain that has rows or a checkpoint, ascending. */
export async function listChains(db: AuditDb): Promise<number[]> {
  const { results } = await db.prepare('SELECT chain FROM audit_log GROUP BY chain UNION SELECT chain FROM audit_checkpoint ORDER BY 1')
    .all<{ chain: unknown }>()
  return results.map((r) => (typeof r.chain === 'number' ? r.chain : Number.NaN))
}

export interface PruneOptions {
  /** Verify the rows about to be deleted first; refuse (AuditChainError) if they do not. Default true. */
  verify?: boolean
  /** Rows deleted per batch, to stay within D1's per-query limits. Default 5000. */
  chunkSize?: number
  /** Clock for `pruned_at`. Default () => new Date(). */
  now?: () => Date
  /** Which chain. Default 0. */
  chain?: number
}

const PRUNE_RANGE_SQL = `SELECT
  (SELECT seq FROM audit_log WHERE chain = ?2 AND ts >= ?1 ORDER BY seq LIMIT 1) AS keep_from,
  (SELECT max(seq) FROM audit_log WHERE chain = ?2) AS max_seq,
  (SELECT min(seq) FROM audit_log WHERE chain = ?2) AS min_seq`
const CHECKPOINT_SQL = `INSERT INTO audit_checkpoint (chain, last_seq, last_hash, pruned_at)
SELECT ?3, seq, hash, ?2 FROM audit_log WHERE chain = ?3 AND seq = ?1
ON CONFLICT (chain) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash, pruned_at = excluded.pruned_at
WHERE excluded.last_seq >= audit_checkpoint.last_seq`
// Deletes only if the checkpoint now points at the last deleted row.
const DELETE_SQL = `DELETE FROM audit_log WHERE chain = ?2 AND seq <= ?1
AND EXISTS (SELECT 1 FROM audit_checkpoint WHERE chain = ?2 AND last_seq = ?1)`

/**
 * Deletes the audit rows older than `olderThan` (a prefix of the chain; a
 * row older than the cutoff that follows a newer one is kept until the next
 * run) and moves the checkpoint to the last deleted row, in the same batch.
 * Run it from the scheduled handler (AUDIT_RETENTION_DAYS).
 */
export async function pruneAudit(
  db: AuditDb,
  olderThan: Date,
  opts: PruneOptions = {},
): Promise<{ deleted: number; checkpoint?: ChainHead }> {
  const { verify = true, chunkSize = 5000, now = () => new Date(), chain = 0 } = opts
  if (Number.isNaN(olderThan.getTime())) throw new RangeError('pruneAudit: invalid cutoff date')
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new RangeError('pruneAudit: "chunkSize" must be a positive integer')
  const conn = primary(db)
  const range = await conn.prepare(PRUNE_RANGE_SQL).bind(olderThan.toISOString(), chain)
    .first<{ keep_from: number | null; max_seq: number | null; min_seq: number | null }>()
  if (!range || range.min_seq === null || range.max_seq === null) return { deleted: 0 }
  const last = range.keep_from === null ? range.max_seq : range.keep_from - 1
  if (last < range.min_seq) return { deleted: 0 }

  const start = (await readCheckpoint(conn, chain)) ?? { ...GENESIS }
  if (verify) {
    const result = await verifyChain(readChain(conn, { chain, upToSeq: last }), start)
    if (!result.ok) throw new AuditChainError(result)
  }

  let deleted = 0
  for (let from = range.min_seq - 1; from < last;) {
    const upTo = Math.min(last, from + chunkSize)
    const [, deletion] = await conn.batch([
      conn.prepare(CHECKPOINT_SQL).bind(upTo, now().toISOString(), chain),
      conn.prepare(DELETE_SQL).bind(upTo, chain),
    ])
    const changes = deletion?.meta.changes ?? 0
    if (changes === 0) break // row upTo missing: the checkpoint did not move, nothing deleted
    deleted += changes
    from = upTo
  }
  const checkpoint = deleted > 0 ? await readCheckpoint(conn, chain) : null
  return checkpoint ? { deleted, checkpoint } : { deleted }
}
