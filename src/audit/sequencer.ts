// AuditSequencer: the one writer of an audit chain (a SQLite-backed Durable
// Object addressed by idFromName('chain-<n>'); today one chain, 'chain-0').
//
// RPC methods:
//   append(record: AuditRecord): Promise<{ seq: number; hash: string }>
//     Seals the record as head.seq + 1 in arrival order (chain.ts sealRow,
//     the same canonical form audit:verify checks) and writes the sealed row
//     to this object's own transactional storage (the `outbox` table) before
//     returning: "accepted" means durable. Rows are then group-committed to
//     D1: one flush in flight at a time, and everything accepted meanwhile
//     goes into the next single db.batch(), in seq order. When D1 fails the
//     outbox is kept and an alarm retries the drain. One `audit_head` info
//     line per flush (not per row) anchors the chain outside D1.
//   commit(statements: StatementData[], record: AuditRecord, opts?: { requireChange?: boolean }):
//     Promise<{ applied: true; seq: number; hash: string } | { applied: false; reason: 'no_change' | 'batch_failed' }>
//     Flushes the outbox first, then runs the business statements (as data:
//     { sql, params }) and the sealed audit INSERT in ONE D1 batch (one
//     transaction). With requireChange the batch is applied only when the
//     last business statement changed a row (store.ts auditStatement). On any
//     failure the head is not advanced, so the seq is not consumed: a failed
//     batch leaves neither the change nor the row and returns applied=false
//     (reason 'batch_failed', detail logged as audit_commit_failed).
//
// The head is loaded in blockConcurrencyWhile in the constructor: the newest
// outbox row if any (not yet in D1), else D1's head (chainHead).
import { DurableObject } from 'cloudflare:workers'
import { createLogger } from '../log.ts'
import { sealRow, type AuditRecord, type AuditRow, type ChainHead } from './chain.ts'
import { auditStatement, chainHead, insertStatement, isNoChange, isSeqConflict } from './store.ts'

/** One business statement as data, so it can cross the RPC boundary. */
export interface StatementData {
  sql: string
  params: unknown[]
}

export type CommitOutcome = { applied: true; seq: number; hash: string } | { applied: false; reason: 'no_change' | 'batch_failed' }

/** Rows per D1 batch when draining (keeps one batch well under D1's limits). */
const FLUSH_MAX_ROWS = 200
const RETRY_MS = 1000

export class AuditSequencer extends DurableObject<Env> {
  private head: ChainHead = { seq: 0, hash: '' }
  /** Serializes sealing (and commit), so seq follows arrival order. */
  private tail: Promise<unknown> = Promise.resolve()
  private flushing: Promise<void> | null = null
  private readonly log = createLogger({ component: 'audit_sequencer' })

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    void ctx.blockConcurrencyWhile(async () => {
      ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, row TEXT NOT NULL)')
      const last = ctx.storage.sql.exec<{ row: string }>('SELECT row FROM outbox ORDER BY seq DESC LIMIT 1').toArray()[0]
      if (last) {
        const row = JSON.parse(last.row) as AuditRow
        this.head = { seq: row.seq, hash: row.hash }
      } else {
        this.head = await chainHead(env.DB)
      }
    })
  }

  private async serial<T>(work: () => Promise<T>): Promise<T> {
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
    const row = await this.serial(async () => {
      const sealed = await sealRow(record, this.head)
      this.ctx.storage.sql.exec('INSERT INTO outbox (seq, row) VALUES (?, ?)', sealed.seq, JSON.stringify(sealed))
      this.head = { seq: sealed.seq, hash: sealed.hash }
      return sealed
    })
    this.kick()
    return { seq: row.seq, hash: row.hash }
  }

  async commit(statements: StatementData[], record: AuditRecord, opts: { requireChange?: boolean } = {}): Promise<CommitOutcome> {
    if (opts.requireChange && statements.length === 0) throw new TypeError('commit: "requireChange" needs at least one statement')
    return this.serial(async () => {
      await this.flush()
      if (this.pending() > 0) throw new Error('audit sequencer: D1 unavailable, outbox not drained; mutation not applied')
      const row = await sealRow(record, this.head)
      const db = this.env.DB
      const business = statements.map((s) => db.prepare(s.sql).bind(...s.params))
      try {
        await db.batch([...business, auditStatement(db, row, opts.requireChange ?? false)])
      } catch (error) {
        if (opts.requireChange && isNoChange(error)) return { applied: false, reason: 'no_change' } as const
        const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
        this.log('error', 'audit_commit_failed', { reason, seq_not_consumed: row.seq })
        return { applied: false, reason: 'batch_failed' } as const
      }
      this.head = { seq: row.seq, hash: row.hash }
      this.log('info', 'audit_head', { seq: row.seq, hash: row.hash, rows: 1 })
      return { applied: true, seq: row.seq, hash: row.hash } as const
    })
  }

  override async alarm(): Promise<void> {
    await this.flush()
  }

  private pending(): number {
    return this.ctx.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM outbox').one().n
  }

  /** Starts a drain unless one is in flight. */
  private kick(): void {
    if (this.flushing) return
    this.flushing = this.drain().finally(() => {
      this.flushing = null
    })
  }

  /** Resolves once the outbox is empty or D1 failed (alarm set). */
  private async flush(): Promise<void> {
    while (this.flushing) await this.flushing
    if (this.pending() === 0) return
    this.kick()
    await this.flushing
  }

  private async drain(): Promise<void> {
    const db = this.env.DB
    for (;;) {
      const rows = this.ctx.storage.sql
        .exec<{ row: string }>('SELECT row FROM outbox ORDER BY seq LIMIT ?', FLUSH_MAX_ROWS)
        .toArray()
        .map((r) => JSON.parse(r.row) as AuditRow)
      const last = rows[rows.length - 1]
      if (!last) return
      try {
        await db.batch(rows.map((row) => insertStatement(db, row)))
      } catch (error) {
        if (isSeqConflict(error)) {
          // A previous drain reached D1 but not our delete: drop what D1 already holds.
          const stored = await chainHead(db)
          this.ctx.storage.sql.exec('DELETE FROM outbox WHERE seq <= ?', stored.seq)
          continue
        }
        const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
        this.log('warn', 'audit_flush_failed', { reason, pending: this.pending(), retry_ms: RETRY_MS })
        await this.ctx.storage.setAlarm(Date.now() + RETRY_MS)
        return
      }
      this.ctx.storage.sql.exec('DELETE FROM outbox WHERE seq <= ?', last.seq)
      this.log('info', 'audit_head', { seq: last.seq, hash: last.hash, rows: rows.length })
    }
  }
}
