// AuditSequencer: the one writer of an audit chain (a SQLite-backed Durable
// Object addressed by idFromName('chain-<n>'), n = chainOf(sub, AUDIT_CHAINS);
// see chains.ts). It writes chain n's rows with audit_log.chain = n; an object
// whose name is not 'chain-<n>' refuses every call.
//
// RPC methods:
//   appendMany(records: AuditRecord[]): Promise<({ seq: number; hash: string } | { folded: number })[]>
//     Several records in one request, in the order given: how the Worker
//     sends every row (src/audit/writer.ts batches the rows of concurrent
//     calls). A refusal is admitted as refuse() does, any other record as
//     append() does.
//   append(record: AuditRecord): Promise<{ seq: number; hash: string }>
//     One row, whatever the outcome (no refusal budget).
//     Seals the record as head.seq + 1 in arrival order (chain.ts sealRow,
//     the same canonical form audit:verify checks) and writes the sealed row
//     to this object's own transactional storage (the `outbox` table) before
//     returning: "accepted" means durable. Rows are then group-committed to
//     D1: one flush in flight at a time; a flush first gathers rows for up to
//     GATHER_MS (less when FLUSH_MAX_ROWS are waiting, none when commit,
//     drain, resync or the alarm asks for a flush), and everything accepted
//     by then goes into one db.batch(), in seq order. (Per flush, not per
//     row: the D1 round trip and the outbox DELETE; under load the gathering
//     is what keeps a batch from carrying one or two rows.) The D1 INSERT is
//     idempotent by seq (ON CONFLICT DO NOTHING, then the stored hash is
//     compared), so a flush retried after a crash never duplicates a row.
//     When D1 fails the outbox is kept and an alarm retries the drain (1 s,
//     doubling to 30 s). One `audit_head` info line per flush (not per row)
//     anchors the chain outside D1.
//   commit(statements: SqlStatement[], record: AuditRecord, opts?: { requireChange?: boolean }):
//     Promise<CommitOutcome>
//     Flushes the outbox first, then runs the business statements (as data:
//     { sql, params }) and the sealed audit INSERT in ONE D1 batch (one
//     transaction). With requireChange the batch is applied only when the
//     last business statement changed a row (store.ts auditStatement). On any
//     failure the head is not advanced, so the seq is not consumed: a failed
//     batch leaves neither the change nor the row and returns applied=false
//     ('batch_failed', detail logged as audit_commit_failed; 'unavailable'
//     when the outbox could not be drained first, as the mutation's row must
//     follow every row accepted before it).
//   refuse(record: AuditRecord): Promise<{ seq: number; hash: string } | { folded: number }>
//     A refusal (denied, invalid_input, rate_limited), counted exactly
//     against the policy's refusalBudget for its `sub` (this object is the
//     one writer of the sub's chain, so it sees every refusal of the sub).
//     A sub's window opens at its first refusal after the previous window
//     closed and lasts refusalBudget.windowSeconds. The first `limit`
//     refusals of the window are appended as rows (as append does). Past it,
//     each refusal is folded into the window's open aggregate for its outcome
//     (one per sub, window and outcome) and `folded` is that aggregate's
//     count so far. An aggregate is a record like any other, with `count`,
//     `first_request_id` and `last_request_id`; `ts`, `request_id`,
//     `token_id`, `http_status` and `duration_ms` are its first refusal's,
//     and `tool`, `error_code` and the client columns are NULL where its
//     refusals differ; it keeps no arguments. It is held in this object's
//     storage (refusal_aggregate; the budget in refusal_window) from the
//     first refusal it counts, so "folded" is as durable as "accepted", and
//     is sealed into the chain when its window closes (the alarm, or the
//     first append or refusal after that) or at drain(). So each window of
//     a sub has at most `limit` + 3 refusal rows, and the sum of
//     coalesce(count, 1) over its refusal rows is exactly its refusals.
//   drain(): Promise<number>
//     Seals every open aggregate (its window's later refusals past the
//     budget open a new one), flushes the outbox to D1 now and resolves with
//     the rows still pending (0 unless D1 is failing). A barrier for tests
//     and operators.
//   resync(): Promise<{ ok: true; head: ChainHead } | { ok: false; pending: number }>
//     Drains, then reloads the head from D1. For after D1 was restored from
//     a backup (Time Travel) or cleared: without it the next row would follow
//     a head D1 no longer has. Refuses (ok=false) while rows are pending, so
//     it never drops an accepted row.
//
// The head is loaded in blockConcurrencyWhile in the constructor (and every
// call waits for it): the newest outbox row if any (not yet in D1), else D1's
// head (chainHead).
//
// The outbox is the durable copy; the object also keeps the same sealed rows
// in memory (`held`, in seq order, while there are at most MEMORY_MAX_ROWS of
// them), so a drain neither reads SQLite nor parses JSON for rows it sealed
// itself. After a restart the constructor reads the outbox back into memory;
// while it holds more rows than that (D1 has been failing for a while) the
// drain reads the outbox table instead, 200 rows at a time. Either way the rows sent are the oldest ones, in seq order, and a row leaves
// the outbox only after D1 has it.
import { DurableObject } from 'cloudflare:workers'
import type { SqlStatement } from '../db/queries.ts'
import { createLogger, type Logger } from '../log.ts'
import { POLICY } from '../policy/policy.ts'
import { isRefusal, normalizeRecord, sealRow, type AuditRecord, type AuditRow, type ChainHead } from './chain.ts'
import { parseChainName } from './chains.ts'
import { auditStatement, chainHead, idempotentInsertStatement, isNoChange } from './store.ts'

export type CommitOutcome =
  | { applied: true; seq: number; hash: string }
  | { applied: false; reason: 'no_change' | 'batch_failed' | 'unavailable' }

/** Rows per D1 batch when draining (keeps one batch well under D1's limits). */
const FLUSH_MAX_ROWS = 200
/** Sealed rows also held in memory for the drain; beyond this the drain reads them back from the outbox table. */
const MEMORY_MAX_ROWS = 1000
/** How long a flush waits for more rows before it sends its batch (unless asked to flush now). */
const GATHER_MS = 25
const RETRY_MIN_MS = 1000
const RETRY_MAX_MS = 30_000

function reasonOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}

export class AuditSequencer extends DurableObject<Env> {
  private readonly chain: number
  private head: ChainHead = { seq: 0, hash: '' }
  /** Serializes sealing (and commit), so seq follows arrival order. */
  private tail: Promise<unknown> = Promise.resolve()
  private flushing: Promise<void> | null = null
  /** Callers waiting in flush(): while any, a drain sends at once instead of gathering. */
  private urgent = 0
  /** Ends the current gathering wait early. */
  private wake: (() => void) | null = null
  private failures = 0
  /** Rows in the outbox table (the durable copy). */
  private outboxRows = 0
  /** The outbox's rows in seq order, in memory; null while the outbox holds more than MEMORY_MAX_ROWS (read it instead). */
  private held: AuditRow[] | null = []
  /** Earliest `closes` of refusal_window (Infinity when empty): before it, no window or aggregate is due. */
  private nextClose = Number.POSITIVE_INFINITY
  /** The head and outbox are loaded: every call waits for it (a direct call on a new instance too). */
  private readonly ready: Promise<void>
  private readonly log: Logger

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    const chain = parseChainName(ctx.id.name)
    this.chain = chain ?? -1
    this.log = createLogger({ component: 'audit_sequencer', chain: this.chain })
    this.ready = ctx.blockConcurrencyWhile(async () => {
      if (chain === undefined) return // every call refuses (named)
      const sql = ctx.storage.sql
      sql.exec('CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, row TEXT NOT NULL)')
      sql.exec('CREATE TABLE IF NOT EXISTS refusal_window (sub TEXT PRIMARY KEY, closes INTEGER NOT NULL, used INTEGER NOT NULL)')
      sql.exec(`CREATE TABLE IF NOT EXISTS refusal_aggregate (sub TEXT NOT NULL, outcome TEXT NOT NULL, closes INTEGER NOT NULL,
        record TEXT NOT NULL, PRIMARY KEY (sub, outcome))`)
      this.nextClose = this.earliestClose()
      this.outboxRows = sql.exec<{ n: number }>('SELECT count(*) AS n FROM outbox').one().n
      if (this.outboxRows === 0) {
        this.head = await chainHead(env.DB, chain)
        return
      }
      // Rows accepted before a restart and not yet in D1: they come first.
      this.held = this.outboxRows <= MEMORY_MAX_ROWS ? this.readOutbox(MEMORY_MAX_ROWS) : null
      const last = this.held ? this.held[this.held.length - 1] : this.readOutbox(1, 'DESC')[0]
      if (!last) throw new Error('audit sequencer: outbox count and rows disagree')
      this.head = { seq: last.seq, hash: last.hash }
    })
  }

  private async serial<T>(work: () => Promise<T>): Promise<T> {
    if (this.chain < 0) throw new Error(`audit sequencer: addressed as "${this.ctx.id.name ?? '(no name)'}", not idFromName('chain-<n>')`)
    const previous = this.tail
    let release = () => {}
    this.tail = new Promise<void>((resolve) => { release = resolve })
    try {
      await this.ready
      await previous
      return await work()
    } finally {
      release()
    }
  }

  async append(record: AuditRecord): Promise<{ seq: number; hash: string }> {
    const row = await this.serial(async () => {
      await this.closeWindows(Date.now())
      return this.admitRow(record)
    })
    this.afterAccept()
    return row
  }

  async appendMany(records: AuditRecord[]): Promise<({ seq: number; hash: string } | { folded: number })[]> {
    const results = await this.serial(async () => {
      const now = Date.now()
      await this.closeWindows(now)
      const out: ({ seq: number; hash: string } | { folded: number })[] = []
      for (const record of records) {
        out.push(isRefusal(record.outcome) ? await this.admitRefusal(normalizeRecord(record), now) : await this.admitRow(record))
      }
      return out
    })
    if (results.some((r) => !('folded' in r))) this.afterAccept()
    return results
  }

  async refuse(refusal: AuditRecord): Promise<{ seq: number; hash: string } | { folded: number }> {
    if (!isRefusal(refusal.outcome)) throw new TypeError(`refuse: "${refusal.outcome}" is not a refusal outcome`)
    const [result] = await this.appendMany([refusal])
    return result!
  }

  /** Seals `record` as the next row and accepts it. Inside serial(). */
  private async admitRow(record: AuditRecord): Promise<{ seq: number; hash: string }> {
    const sealed = await sealRow(record, this.head)
    this.ctx.storage.transactionSync(() => this.accept(sealed))
    return { seq: sealed.seq, hash: sealed.hash }
  }

  /** A refusal within its sub's budget becomes a row; past it, it is folded into the window's aggregate. Inside serial(). */
  private async admitRefusal(record: AuditRecord, now: number): Promise<{ seq: number; hash: string } | { folded: number }> {
    const sql = this.ctx.storage.sql
    const { limit, windowSeconds } = POLICY.refusalBudget
    const window = sql.exec<{ closes: number; used: number }>('SELECT closes, used FROM refusal_window WHERE sub = ?', record.sub).toArray()[0]
    const closes = window?.closes ?? now + windowSeconds * 1000
    const used = window?.used ?? 0
    if (used < limit) {
      const sealed = await sealRow(record, this.head)
      this.ctx.storage.transactionSync(() => {
        sql.exec('INSERT INTO refusal_window (sub, closes, used) VALUES (?1, ?2, ?3) ON CONFLICT (sub) DO UPDATE SET used = ?3',
          record.sub, closes, used + 1)
        this.accept(sealed)
      })
      this.nextClose = Math.min(this.nextClose, closes)
      return { seq: sealed.seq, hash: sealed.hash }
    }
    const folded = this.fold(record, closes)
    if (!window) sql.exec('INSERT INTO refusal_window (sub, closes, used) VALUES (?1, ?2, ?3)', record.sub, closes, used)
    this.nextClose = Math.min(this.nextClose, closes)
    if (folded === 1) await this.alarmBy(closes) // a new aggregate: sealed when its window closes
    return { folded }
  }

  async commit(statements: SqlStatement[], record: AuditRecord, opts: { requireChange?: boolean } = {}): Promise<CommitOutcome> {
    if (opts.requireChange && statements.length === 0) throw new TypeError('commit: "requireChange" needs at least one statement')
    return this.serial(async () => {
      await this.flush()
      if (this.pending() > 0) return { applied: false, reason: 'unavailable' } as const
      const row = await sealRow(record, this.head)
      const db = this.env.DB
      const business = statements.map((s) => db.prepare(s.sql).bind(...s.params))
      try {
        await db.batch([...business, auditStatement(db, row, opts.requireChange ?? false, this.chain)])
      } catch (error) {
        if (opts.requireChange && isNoChange(error)) return { applied: false, reason: 'no_change' } as const
        this.log('error', 'audit_commit_failed', { reason: reasonOf(error), seq_not_consumed: row.seq })
        return { applied: false, reason: 'batch_failed' } as const
      }
      this.head = { seq: row.seq, hash: row.hash }
      this.log('info', 'audit_head', { seq: row.seq, hash: row.hash, rows: 1 })
      return { applied: true, seq: row.seq, hash: row.hash } as const
    })
  }

  async drain(): Promise<number> {
    await this.serial(async () => this.sealAggregates(Number.MAX_SAFE_INTEGER))
    await this.flush()
    return this.pending()
  }

  async resync(): Promise<{ ok: true; head: ChainHead } | { ok: false; pending: number }> {
    return this.serial(async () => {
      await this.flush()
      const pending = this.pending()
      if (pending > 0) return { ok: false, pending } as const
      this.head = await chainHead(this.env.DB, this.chain)
      return { ok: true, head: { ...this.head } } as const
    })
  }

  override async alarm(): Promise<void> {
    await this.serial(async () => this.closeWindows(Date.now()))
    await this.flush()
    const open = this.ctx.storage.sql.exec<{ closes: number | null }>('SELECT min(closes) AS closes FROM refusal_aggregate').one().closes
    if (open !== null) await this.alarmBy(open)
  }

  /** Writes a sealed row to the outbox and holds it; the caller runs it in the transaction that goes with it. */
  private accept(sealed: AuditRow): void {
    // Durable before the RPC returns: the runtime holds the reply until the write is committed.
    this.ctx.storage.sql.exec('INSERT INTO outbox (seq, row) VALUES (?, ?)', sealed.seq, JSON.stringify(sealed))
    this.outboxRows += 1
    if (this.held && this.held.length < MEMORY_MAX_ROWS) this.held.push(sealed)
    else this.held = null
    if (this.outboxRows >= FLUSH_MAX_ROWS) this.wake?.()
    this.head = { seq: sealed.seq, hash: sealed.hash }
  }

  private afterAccept(): void {
    // While D1 is failing the alarm owns the retries: no D1 attempt per append.
    if (this.failures === 0) this.kick()
  }

  /**
   * Counts a refusal past the budget in its (sub, outcome) aggregate, opening
   * it when there is none; returns the aggregate's count.
   */
  private fold(record: AuditRecord, closes: number): number {
    const sql = this.ctx.storage.sql
    const stored = sql.exec<{ record: string }>('SELECT record FROM refusal_aggregate WHERE sub = ? AND outcome = ?', record.sub, record.outcome)
      .toArray()[0]
    let aggregate: AuditRecord
    if (stored) {
      const open = JSON.parse(stored.record) as AuditRecord
      const same = (column: 'tool' | 'error_code' | 'client_name' | 'client_version') => (open[column] === record[column] ? open[column] : null)
      aggregate = {
        ...open,
        tool: same('tool'),
        error_code: same('error_code'),
        client_name: same('client_name'),
        client_version: same('client_version'),
        count: (open.count ?? 0) + 1,
        last_request_id: record.request_id,
      }
    } else {
      aggregate = {
        ...record,
        input_json: null,
        input_bytes: null,
        input_sha256: null,
        count: 1,
        first_request_id: record.request_id,
        last_request_id: record.request_id,
      }
    }
    sql.exec('INSERT OR REPLACE INTO refusal_aggregate (sub, outcome, closes, record) VALUES (?, ?, ?, ?)',
      record.sub, record.outcome, closes, JSON.stringify(aggregate))
    return aggregate.count ?? 1
  }

  /** Seals the aggregates of windows closed by `now` and forgets those windows' budgets. */
  private async closeWindows(now: number): Promise<void> {
    if (now < this.nextClose) return
    await this.sealAggregates(now)
    this.ctx.storage.sql.exec('DELETE FROM refusal_window WHERE closes <= ?', now)
    this.nextClose = this.earliestClose()
  }

  /** Seals, in the order their windows close, every aggregate whose window closes by `until`. Runs inside serial(). */
  private async sealAggregates(until: number): Promise<void> {
    const sql = this.ctx.storage.sql
    const due = sql.exec<{ sub: string; outcome: string; record: string }>(
      'SELECT sub, outcome, record FROM refusal_aggregate WHERE closes <= ? ORDER BY closes, sub, outcome', until,
    ).toArray()
    for (const aggregate of due) {
      const sealed = await sealRow(JSON.parse(aggregate.record) as AuditRecord, this.head)
      this.ctx.storage.transactionSync(() => {
        sql.exec('DELETE FROM refusal_aggregate WHERE sub = ? AND outcome = ?', aggregate.sub, aggregate.outcome)
        this.accept(sealed)
      })
    }
    if (due.length > 0) this.afterAccept()
  }

  private earliestClose(): number {
    const closes = this.ctx.storage.sql.exec<{ closes: number | null }>('SELECT min(closes) AS closes FROM refusal_window').one().closes
    return closes ?? Number.POSITIVE_INFINITY
  }

  /** Makes sure the alarm fires by `at` (an earlier alarm, e.g. a flush retry, is kept). */
  private async alarmBy(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm()
    if (current === null || current > at) await this.ctx.storage.setAlarm(at)
  }

  private pending(): number {
    return this.outboxRows
  }

  /** The oldest (or newest) `limit` rows of the outbox table. */
  private readOutbox(limit: number, order: 'ASC' | 'DESC' = 'ASC'): AuditRow[] {
    return this.ctx.storage.sql
      .exec<{ row: string }>(`SELECT row FROM outbox ORDER BY seq ${order} LIMIT ?`, limit)
      .toArray()
      .map((r) => JSON.parse(r.row) as AuditRow)
  }

  /** Starts a drain unless one is in flight. */
  private kick(): void {
    if (this.flushing) return
    this.flushing = this.drainOutbox().finally(() => {
      this.flushing = null
    })
  }

  /** Resolves once the outbox is empty or D1 failed (alarm set). Sends at once (no gathering). */
  private async flush(): Promise<void> {
    this.urgent += 1
    try {
      this.wake?.()
      while (this.flushing) await this.flushing
      if (this.pending() === 0) return
      this.kick()
      await this.flushing
    } finally {
      this.urgent -= 1
    }
  }

  /** Waits up to GATHER_MS for more rows, unless a flush is asked for or a full batch is waiting. */
  private async gather(): Promise<void> {
    if (this.urgent > 0 || this.outboxRows >= FLUSH_MAX_ROWS) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wake?.(), GATHER_MS)
      this.wake = () => {
        this.wake = null
        clearTimeout(timer)
        resolve()
      }
    })
  }

  private async drainOutbox(): Promise<void> {
    const db = this.env.DB
    for (;;) {
      if (this.outboxRows === 0) return
      await this.gather()
      const rows = this.held ? this.held.slice(0, FLUSH_MAX_ROWS) : this.readOutbox(FLUSH_MAX_ROWS)
      const last = rows[rows.length - 1]
      if (!last) return
      let results: D1Result[]
      try {
        results = await db.batch(rows.map((row) => idempotentInsertStatement(db, row, this.chain)))
      } catch (error) {
        this.failures += 1
        const retryMs = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1))
        this.log('warn', 'audit_flush_failed', { reason: reasonOf(error), pending: this.pending(), retry_ms: retryMs })
        await this.ctx.storage.setAlarm(Date.now() + retryMs)
        return
      }
      this.failures = 0
      await this.checkSkipped(rows, results)
      this.ctx.storage.sql.exec('DELETE FROM outbox WHERE seq <= ?', last.seq)
      this.outboxRows -= rows.length
      // Only the drain removes rows, and appends only add after them: the sent rows are the first ones held.
      if (this.held) this.held.splice(0, rows.length)
      else if (this.outboxRows === 0) this.held = []
      this.log('info', 'audit_head', { seq: last.seq, hash: last.hash, rows: rows.length })
    }
  }

  /**
   * A row D1 already had (changes = 0): normally an earlier flush that
   * reached D1 before this object lost its outbox DELETE. If D1's row at
   * that seq is a different one, the chain has a second writer: say so loudly.
   */
  private async checkSkipped(rows: AuditRow[], results: D1Result[]): Promise<void> {
    for (const [i, row] of rows.entries()) {
      if ((results[i]?.meta.changes ?? 1) > 0) continue
      const stored = await this.env.DB.prepare('SELECT hash FROM audit_log WHERE chain = ?1 AND seq = ?2')
        .bind(this.chain, row.seq).first<string>('hash')
      if (stored !== row.hash) this.log('error', 'audit_seq_taken', { seq: row.seq, stored_hash: stored, replay: row })
    }
  }
}
