// AuditSequencer: the one writer of an audit chain (a SQLite-backed Durable
// Object addressed by idFromName('chain-<n>'), n = chainOf(sub, AUDIT_CHAINS);
// see chains.ts). It writes chain n's rows with audit_log.chain = n; an object
// whose name is not 'chain-<n>' refuses every call.
//
// RPC methods:
//   appendMany(records: AuditRecord[]): Promise<{ seq: number; hash: string }[]>
//     append() for several records in one request, in the order given (one
//     outbox transaction for all of them): how an isolate's rows arrive
//     (src/audit/writer.ts batches the rows of concurrent calls).
//   append(record: AuditRecord): Promise<{ seq: number; hash: string }>
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
//   drain(): Promise<number>
//     Flushes the outbox to D1 now and resolves with the rows still pending
//     (0 unless D1 is failing). A barrier for tests and operators.
//   resync(): Promise<{ ok: true; head: ChainHead } | { ok: false; pending: number }>
//     Drains, then reloads the head from D1. For after D1 was restored from
//     a backup (Time Travel) or cleared: without it the next row would follow
//     a head D1 no longer has. Refuses (ok=false) while rows are pending, so
//     it never drops an accepted row.
//
// The head is loaded in blockConcurrencyWhile in the constructor: the newest
// outbox row if any (not yet in D1), else D1's head (chainHead).
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
import { sealRow, type AuditRecord, type AuditRow, type ChainHead } from './chain.ts'
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
  private readonly log: Logger

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    const chain = parseChainName(ctx.id.name)
    this.chain = chain ?? -1
    this.log = createLogger({ component: 'audit_sequencer', chain: this.chain })
    void ctx.blockConcurrencyWhile(async () => {
      if (chain === undefined) return // every call refuses (named)
      const sql = ctx.storage.sql
      sql.exec('CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, row TEXT NOT NULL)')
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
      await previous
      return await work()
    } finally {
      release()
    }
  }

  async append(record: AuditRecord): Promise<{ seq: number; hash: string }> {
    const [head] = await this.appendMany([record])
    return head!
  }

  async appendMany(records: AuditRecord[]): Promise<{ seq: number; hash: string }[]> {
    const rows = await this.serial(async () => {
      const sealed: AuditRow[] = []
      let head = this.head
      for (const record of records) {
        const row = await sealRow(record, head)
        sealed.push(row)
        head = { seq: row.seq, hash: row.hash }
      }
      // Durable before appendMany returns: the runtime holds this reply until the writes are committed.
      this.ctx.storage.transactionSync(() => {
        for (const row of sealed) this.ctx.storage.sql.exec('INSERT INTO outbox (seq, row) VALUES (?, ?)', row.seq, JSON.stringify(row))
      })
      this.outboxRows += sealed.length
      if (this.held && this.held.length + sealed.length <= MEMORY_MAX_ROWS) this.held.push(...sealed)
      else this.held = null
      if (this.outboxRows >= FLUSH_MAX_ROWS) this.wake?.()
      this.head = head
      return sealed
    })
    // While D1 is failing the alarm owns the retries: no D1 attempt per append.
    if (this.failures === 0 && rows.length > 0) this.kick()
    return rows.map((row) => ({ seq: row.seq, hash: row.hash }))
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
    await this.serial(async () => {})
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
    await this.flush()
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
