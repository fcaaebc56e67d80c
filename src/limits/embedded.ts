/**
 * Embedded limiter backend, used when the Upstash settings are unset:
 * LIMIT_SHARDS Durable Objects ('shard-<n>'), each the one owner of the
 * windows and leases of every subject (token `sub`) that maps to it
 * (shardOf, src/shard.ts). A new subject costs what a known one does: no
 * object is started and no storage is created for it.
 *
 * Typed RPC (one round trip per call, via Workers RPC on the stub):
 *   acquire(req: AcquireRequest): Promise<AcquireResult>
 *     Checks every rate rule (sliding window log: the timestamps of the
 *     accepted calls inside the window) and, only if all pass and every
 *     concurrency rule has a free slot, records the call in each window and
 *     takes one lease per concurrency rule. Refusals record nothing.
 *   release(key, concurrency, leaseId): Promise<void>
 *     Drops the lease id from each rule. Idempotent.
 *   acquire(req, releases) / releaseMany(releases)
 *     The same, with the releases that rode along (src/limits/carry.ts: a
 *     release waits for the next acquire to its shard from this isolate, or
 *     goes alone after CARRY_RELEASE_MS); the releases are applied first.
 *
 * Exactness: a subject has exactly one owner; a Durable Object runs one
 * request at a time and the handlers do no I/O between reading and writing
 * state (SQLite storage calls are synchronous), so concurrent callers of one
 * key are serialised; the count kept is exact. Every entry is keyed by
 * (subject, rule). Leases carry an expiry (`ttlMs`) so a holder that dies
 * without releasing frees its slot.
 *
 * Durability (write-behind): the windows and leases live in memory for the
 * checks and in the object's SQLite storage (`ctx.storage.sql`, tables `hits`
 * and `leases`) for restarts. A change is queued and written within
 * PERSIST_AFTER_MS, together with every other change made meanwhile, in one
 * transaction; the RPC reply does not wait for it. Why: a SQLite write holds
 * the object's replies until it is durable (the runtime's output gate), and
 * one commit per call made the check ~9× slower (450 against 50 µs by the
 * Worker's own clock, which only advances at I/O; timed from outside, a
 * check now takes 60–90 µs here; in production a commit waits for replicas,
 * several ms). The
 * price is bounded and documented: a crash or a deploy can forget what was
 * accepted in the last PERSIST_AFTER_MS (at most that many ms of one
 * subject's calls: a few calls at the policy's rates). A released lease
 * that was not yet written comes back after a restart until it expires, so a
 * restart never frees a slot early. A write is as small as it can be: the
 * calls of one period go in one INSERT (HITS_PER_INSERT rows per statement),
 * and a lease taken and released within one period (most calls: they end in
 * well under PERSIST_AFTER_MS) is never written at all, nor is its release.
 * Refusals change nothing. An alarm at the
 * end of the longest window deletes what expired, on disk and in memory, so
 * an idle subject leaves nothing behind; the constructor reloads only live
 * entries.
 */
import { DurableObject } from 'cloudflare:workers'
import type { AcquireRequest, AcquireResult, ConcurrencyRule, Limiter } from './limiter.ts'
import { LimitStoreError, withStoreTimeout } from './limiter.ts'
import { shardOf } from '../shard.ts'
import { laneOf, sendWaiting } from '../lane.ts'
import { releaseByCarry, type Release } from './carry.ts'

/** Longest an accepted change waits in memory before it is written: the most a crash or a deploy can forget. */
export const PERSIST_AFTER_MS = 1000

/** A lease row to write (`expires`), or to delete (`null`). */
type LeaseChange = { readonly subject: string; readonly rule: string; readonly id: string; readonly expires: number | null; readonly fresh: boolean }

/** SQLite in Durable Objects binds at most 100 parameters per statement: 25 rows of 4. */
const HITS_PER_INSERT = 25

/** The in-memory key of one subject's rule. */
const slotOf = (subject: string, rule: string) => `${subject}\u0000${rule}`

/** A rate window's accepted call timestamps (ascending), and its length. */
interface Window {
  log: number[]
  windowMs: number
}

/** The Durable Object name of limiter shard `n`. */
export function shardName(n: number): string {
  return `shard-${n}`
}

export class LimiterObject extends DurableObject<Env> {
  /** (subject, rule) → its window. */
  private readonly windows = new Map<string, Window>()
  /** (subject, rule) → lease id → expiry (ms since epoch). */
  private readonly leases = new Map<string, Map<string, number>>()
  private readonly sql: SqlStorage
  /** When the cleanup alarm is due (ms), as far as this instance knows. */
  private alarmAt = 0
  /** Accepted calls not yet written: subject, rule, at, expires (flat, four per call); written by flush(). */
  private pendingHits: (string | number)[] = []
  /** Lease rows not yet written, by rule and id: the last change wins (a lease and its release cancel out). */
  private pendingLeases = new Map<string, LeaseChange>()
  private flushTimer: ReturnType<typeof setTimeout> | undefined
  /** The latest expiry queued since the last flush (0: none): the cleanup alarm is armed for it. */
  private horizon = 0

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    this.sql = ctx.storage.sql
    this.sql.exec(`CREATE TABLE IF NOT EXISTS hits (subject TEXT NOT NULL, rule TEXT NOT NULL, at INTEGER NOT NULL, expires INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS hits_expires ON hits (expires);
      CREATE TABLE IF NOT EXISTS leases (subject TEXT NOT NULL, rule TEXT NOT NULL, id TEXT NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (subject, rule, id)) WITHOUT ROWID;`)
    const now = Date.now()
    for (const row of this.sql.exec<{ subject: string; rule: string; at: number; expires: number }>('SELECT subject, rule, at, expires FROM hits WHERE expires > ?1 ORDER BY subject, rule, at', now)) {
      const slot = slotOf(row.subject, row.rule)
      let window = this.windows.get(slot)
      if (window === undefined) this.windows.set(slot, (window = { log: [], windowMs: row.expires - row.at }))
      window.log.push(row.at)
    }
    for (const row of this.sql.exec<{ subject: string; rule: string; id: string; expires: number }>('SELECT subject, rule, id, expires FROM leases WHERE expires > ?1', now)) {
      const slot = slotOf(row.subject, row.rule)
      let held = this.leases.get(slot)
      if (held === undefined) this.leases.set(slot, (held = new Map()))
      held.set(row.id, row.expires)
    }
  }

  acquire(req: AcquireRequest, releases: readonly Release[] = []): AcquireResult {
    this.releaseMany(releases)
    const now = Date.now()
    const subject = req.key
    for (const rule of req.rates) {
      const log = this.prune(slotOf(subject, rule.name), rule.windowMs, now)
      if (log.length >= rule.limit) {
        const oldest = log[log.length - rule.limit] ?? now
        return {
          ok: false,
          rule: rule.name,
          kind: 'rate',
          limit: rule.limit,
          retryAfterSeconds: Math.max(1, Math.ceil((oldest + rule.windowMs - now) / 1000)),
        }
      }
    }
    for (const rule of req.concurrency) {
      const held = this.liveLeases(slotOf(subject, rule.name), now)
      if (held.size >= rule.max && !held.has(req.leaseId)) {
        const soonest = Math.min(...held.values())
        return {
          ok: false,
          rule: rule.name,
          kind: 'concurrency',
          limit: rule.max,
          retryAfterSeconds: Math.max(1, Math.min(Math.ceil((soonest - now) / 1000), 5)),
        }
      }
    }
    const remaining = new Map<string, number>()
    let horizon = now
    for (const rule of req.rates) {
      const log = this.prune(slotOf(subject, rule.name), rule.windowMs, now)
      log.push(now)
      this.pendingHits.push(subject, rule.name, now, now + rule.windowMs)
      remaining.set(rule.name, rule.limit - log.length)
      horizon = Math.max(horizon, now + rule.windowMs)
    }
    for (const rule of req.concurrency) {
      const held = this.liveLeases(slotOf(subject, rule.name), now)
      // Fresh: no live row for this id can exist (memory holds every live lease), so a release before the write cancels both.
      const fresh = !held.has(req.leaseId)
      held.set(req.leaseId, now + rule.ttlMs)
      this.pendingLeases.set(`${slotOf(subject, rule.name)}\u0000${req.leaseId}`, { subject, rule: rule.name, id: req.leaseId, expires: now + rule.ttlMs, fresh })
      remaining.set(rule.name, rule.max - held.size)
      horizon = Math.max(horizon, now + rule.ttlMs)
    }
    this.horizon = Math.max(this.horizon, horizon)
    this.scheduleFlush()
    return { ok: true, leaseId: req.leaseId, remaining }
  }

  releaseMany(releases: readonly Release[]): void {
    for (const r of releases) this.release(r.key, r.concurrency, r.leaseId)
  }

  release(subject: string, concurrency: readonly ConcurrencyRule[], leaseId: string): void {
    for (const rule of concurrency) {
      const slot = slotOf(subject, rule.name)
      const held = this.leases.get(slot)
      if (!held?.delete(leaseId)) continue
      if (held.size === 0) this.leases.delete(slot)
      const change = `${slot}\u0000${leaseId}`
      const queued = this.pendingLeases.get(change)
      // Taken and released within one write-behind period: nothing to write for it at all.
      if (queued?.fresh === true && queued.expires !== null) this.pendingLeases.delete(change)
      else this.pendingLeases.set(change, { subject, rule: rule.name, id: leaseId, expires: null, fresh: false })
      this.scheduleFlush()
    }
  }

  /**
   * Writes every queued change in one transaction and arms the cleanup alarm.
   * Runs PERSIST_AFTER_MS after the first change it writes; callable at any
   * time (tests use it to persist now).
   */
  flush(): void {
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    const hits = this.pendingHits
    const leases = this.pendingLeases
    if (hits.length > 0 || leases.size > 0) {
      this.pendingHits = []
      this.pendingLeases = new Map()
      this.ctx.storage.transactionSync(() => {
        // One statement per HITS_PER_INSERT calls: at the policy's rates, one per flush.
        for (let i = 0; i < hits.length; i += 4 * HITS_PER_INSERT) {
          const rows = hits.slice(i, i + 4 * HITS_PER_INSERT)
          this.sql.exec(`INSERT INTO hits (subject, rule, at, expires) VALUES ${Array.from({ length: rows.length / 4 }, () => '(?, ?, ?, ?)').join(', ')}`, ...rows)
        }
        for (const c of leases.values()) {
          if (c.expires === null) this.sql.exec('DELETE FROM leases WHERE subject = ?1 AND rule = ?2 AND id = ?3', c.subject, c.rule, c.id)
          else this.sql.exec('INSERT OR REPLACE INTO leases (subject, rule, id, expires) VALUES (?1, ?2, ?3, ?4)', c.subject, c.rule, c.id, c.expires)
        }
      })
    }
    if (this.horizon !== 0) this.scheduleCleanup(this.horizon)
    this.horizon = 0
  }

  private scheduleFlush(): void {
    this.flushTimer ??= setTimeout(() => this.flush(), PERSIST_AFTER_MS)
  }

  /** Deletes every expired entry; re-arms itself while anything is left. */
  override alarm(): void {
    this.flush()
    const now = Date.now()
    this.sql.exec('DELETE FROM hits WHERE expires <= ?1', now)
    this.sql.exec('DELETE FROM leases WHERE expires <= ?1', now)
    for (const [slot, held] of this.leases) {
      this.liveLeases(slot, now)
      if (held.size === 0) this.leases.delete(slot)
    }
    for (const [slot, window] of this.windows) {
      if (this.prune(slot, window.windowMs, now).length === 0) this.windows.delete(slot)
    }
    const next = this.sql.exec<{ last: number | null }>('SELECT max(m) AS last FROM (SELECT max(expires) AS m FROM hits UNION ALL SELECT max(expires) FROM leases)').one().last
    this.alarmAt = 0
    if (next !== null) this.scheduleCleanup(next)
  }

  private scheduleCleanup(at: number): void {
    if (this.alarmAt !== 0 && this.alarmAt >= Date.now() - 1000) return
    this.alarmAt = at
    void this.ctx.storage.setAlarm(at)
  }

  /** The live part of a window (created empty when new); what slid out stays on disk until the alarm. */
  private prune(slot: string, windowMs: number, now: number): number[] {
    let window = this.windows.get(slot)
    if (window === undefined) this.windows.set(slot, (window = { log: [], windowMs }))
    window.windowMs = Math.max(window.windowMs, windowMs)
    const log = window.log
    const after = now - windowMs
    let drop = 0
    while (drop < log.length && (log[drop] ?? 0) <= after) drop++
    if (drop > 0) log.splice(0, drop)
    return log
  }

  private liveLeases(slot: string, now: number): Map<string, number> {
    let held = this.leases.get(slot)
    if (held === undefined) {
      held = new Map()
      this.leases.set(slot, held)
    }
    for (const [id, expiry] of held) if (expiry <= now) held.delete(id)
    return held
  }
}

export interface EmbeddedOptions {
  /** Bound on one RPC to the object; past it the call fails with LimitStoreError (the middleware answers 503). */
  timeoutMs: number
  /** LIMIT_SHARDS: how many objects the subjects are spread over. */
  shards: number
}

/** The Limiter over the LIMITER namespace: a subject's shard object, one RPC per call, each bounded by `timeoutMs`. */
export function embeddedLimiter(ns: DurableObjectNamespace<LimiterObject>, opts: EmbeddedOptions): Limiter {
  if (!(opts.timeoutMs > 0)) throw new Error('embeddedLimiter: "timeoutMs" must be positive')
  // One stub per shard for this limiter (a request's acquire and its release share it); stubs are
  // I/O objects of the request that made them, so they are never kept across requests.
  const stubs = new Map<number, DurableObjectStub<LimiterObject>>()
  const stub = (shard: number) => {
    let s = stubs.get(shard)
    if (s === undefined) stubs.set(shard, (s = ns.get(ns.idFromName(shardName(shard)))))
    return s
  }
  const fail = (what: string) => (error: unknown): never => {
    if (error instanceof LimitStoreError) throw error
    throw new LimitStoreError(`${what} failed: ${error instanceof Error ? error.message : String(error)}`)
  }
  return {
    async acquire(req) {
      const shard = shardOf(req.key, opts.shards)
      try {
        return await sendWaiting(laneOf<Release>(ns, shardName(shard)), (releases) =>
          withStoreTimeout(Promise.resolve().then(() => stub(shard).acquire(req, releases)), opts.timeoutMs, 'limiter object'),
        )
      } catch (error) {
        return fail('limiter object')(error)
      }
    },
    async release(key, concurrency, leaseId) {
      const shard = shardOf(key, opts.shards)
      try {
        await releaseByCarry(laneOf<Release>(ns, shardName(shard)), { key, concurrency, leaseId }, opts.timeoutMs, (releases) =>
          withStoreTimeout(Promise.resolve().then(() => stub(shard).releaseMany(releases)), opts.timeoutMs, 'limiter release'),
        )
      } catch (error) {
        fail('limiter release')(error)
      }
    },
  }
}
