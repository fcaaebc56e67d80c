/**
 * Embedded limiter backend (issue #10): one Durable Object per limited key
 * (the token `sub`), used when the Upstash settings are unset.
 *
 * Typed RPC (one round trip per call, via Workers RPC on the stub):
 *   acquire(req: AcquireRequest): Promise<AcquireResult>
 *     Checks every rate rule (sliding window log: the timestamps of the
 *     accepted calls inside the window) and, only if all pass and every
 *     concurrency rule has a free slot, records the call in each window and
 *     takes one lease per concurrency rule. Refusals record nothing.
 *   release(key, concurrency, leaseId): Promise<void>
 *     Drops the lease id from each rule. Idempotent.
 *
 * Exactness: a Durable Object runs one request at a time and the handlers do
 * no I/O between reading and writing state (SQLite storage calls are
 * synchronous), so concurrent callers of one key are serialised; the count
 * kept is exact. Leases carry an expiry (`ttlMs`) so a holder that dies
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
 * end of the longest window deletes what expired, so an idle subject leaves
 * empty tables behind, not a log; the constructor reloads only live entries.
 */
import { DurableObject } from 'cloudflare:workers'
import type { AcquireRequest, AcquireResult, ConcurrencyRule, Limiter } from './limiter.ts'
import { LimitStoreError, withStoreTimeout } from './limiter.ts'

/** Longest an accepted change waits in memory before it is written: the most a crash or a deploy can forget. */
export const PERSIST_AFTER_MS = 1000

/** A lease row to write (`expires`), or to delete (`null`). */
type LeaseChange = { readonly rule: string; readonly id: string; readonly expires: number | null; readonly fresh: boolean }

/** SQLite in Durable Objects binds at most 100 parameters per statement: 33 rows of 3. */
const HITS_PER_INSERT = 33

export class LimiterObject extends DurableObject<Env> {
  /** rule name → accepted call timestamps (ascending). */
  private readonly windows = new Map<string, number[]>()
  /** rule name → lease id → expiry (ms since epoch). */
  private readonly leases = new Map<string, Map<string, number>>()
  private readonly sql: SqlStorage
  /** When the cleanup alarm is due (ms), as far as this instance knows. */
  private alarmAt = 0
  /** Accepted calls not yet written: rule, at, expires (flat, three per call); written by flush(). */
  private pendingHits: (string | number)[] = []
  /** Lease rows not yet written, by rule and id: the last change wins (a lease and its release cancel out). */
  private pendingLeases = new Map<string, LeaseChange>()
  private flushTimer: ReturnType<typeof setTimeout> | undefined
  /** The latest expiry queued since the last flush (0: none): the cleanup alarm is armed for it. */
  private horizon = 0

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    this.sql = ctx.storage.sql
    this.sql.exec(`CREATE TABLE IF NOT EXISTS hits (rule TEXT NOT NULL, at INTEGER NOT NULL, expires INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS hits_rule_at ON hits (rule, at);
      CREATE TABLE IF NOT EXISTS leases (rule TEXT NOT NULL, id TEXT NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (rule, id)) WITHOUT ROWID;`)
    const now = Date.now()
    for (const row of this.sql.exec<{ rule: string; at: number }>('SELECT rule, at FROM hits WHERE expires > ?1 ORDER BY rule, at', now)) {
      let log = this.windows.get(row.rule)
      if (log === undefined) this.windows.set(row.rule, (log = []))
      log.push(row.at)
    }
    for (const row of this.sql.exec<{ rule: string; id: string; expires: number }>('SELECT rule, id, expires FROM leases WHERE expires > ?1', now)) {
      let held = this.leases.get(row.rule)
      if (held === undefined) this.leases.set(row.rule, (held = new Map()))
      held.set(row.id, row.expires)
    }
  }

  acquire(req: AcquireRequest): AcquireResult {
    const now = Date.now()
    for (const rule of req.rates) {
      const log = this.prune(rule.name, now - rule.windowMs)
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
      const held = this.liveLeases(rule.name, now)
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
      const log = this.windows.get(rule.name) ?? []
      log.push(now)
      this.windows.set(rule.name, log)
      this.pendingHits.push(rule.name, now, now + rule.windowMs)
      remaining.set(rule.name, rule.limit - log.length)
      horizon = Math.max(horizon, now + rule.windowMs)
    }
    for (const rule of req.concurrency) {
      const held = this.liveLeases(rule.name, now)
      // Fresh: no live row for this id can exist (memory holds every live lease), so a release before the write cancels both.
      const fresh = !held.has(req.leaseId)
      held.set(req.leaseId, now + rule.ttlMs)
      this.pendingLeases.set(`${rule.name}\u0000${req.leaseId}`, { rule: rule.name, id: req.leaseId, expires: now + rule.ttlMs, fresh })
      remaining.set(rule.name, rule.max - held.size)
      horizon = Math.max(horizon, now + rule.ttlMs)
    }
    this.horizon = Math.max(this.horizon, horizon)
    this.scheduleFlush()
    return { ok: true, leaseId: req.leaseId, remaining }
  }

  release(_key: string, concurrency: readonly ConcurrencyRule[], leaseId: string): void {
    for (const rule of concurrency) {
      if (!this.leases.get(rule.name)?.delete(leaseId)) continue
      const slot = `${rule.name}\u0000${leaseId}`
      const queued = this.pendingLeases.get(slot)
      // Taken and released within one write-behind period: nothing to write for it at all.
      if (queued?.fresh === true && queued.expires !== null) this.pendingLeases.delete(slot)
      else this.pendingLeases.set(slot, { rule: rule.name, id: leaseId, expires: null, fresh: false })
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
        for (let i = 0; i < hits.length; i += 3 * HITS_PER_INSERT) {
          const rows = hits.slice(i, i + 3 * HITS_PER_INSERT)
          this.sql.exec(`INSERT INTO hits (rule, at, expires) VALUES ${Array.from({ length: rows.length / 3 }, () => '(?, ?, ?)').join(', ')}`, ...rows)
        }
        for (const c of leases.values()) {
          if (c.expires === null) this.sql.exec('DELETE FROM leases WHERE rule = ?1 AND id = ?2', c.rule, c.id)
          else this.sql.exec('INSERT OR REPLACE INTO leases (rule, id, expires) VALUES (?1, ?2, ?3)', c.rule, c.id, c.expires)
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
    for (const [name, held] of this.leases) {
      this.liveLeases(name, now)
      if (held.size === 0) this.leases.delete(name)
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

  private prune(name: string, after: number): number[] {
    const log = this.windows.get(name) ?? []
    let drop = 0
    while (drop < log.length && (log[drop] ?? 0) <= after) drop++
    // Rows that slid out stay on disk until the alarm: the constructor loads only live ones.
    if (drop > 0) log.splice(0, drop)
    this.windows.set(name, log)
    return log
  }

  private liveLeases(name: string, now: number): Map<string, number> {
    let held = this.leases.get(name)
    if (held === undefined) {
      held = new Map()
      this.leases.set(name, held)
    }
    for (const [id, expiry] of held) if (expiry <= now) held.delete(id)
    return held
  }
}

export interface EmbeddedOptions {
  /** Bound on one RPC to the object; past it the call fails with LimitStoreError (the middleware answers 503). */
  timeoutMs: number
}

/** The Limiter over the LIMITER namespace: one object per key, one RPC per call, each bounded by `timeoutMs`. */
export function embeddedLimiter(ns: DurableObjectNamespace<LimiterObject>, opts: EmbeddedOptions): Limiter {
  if (!(opts.timeoutMs > 0)) throw new Error('embeddedLimiter: "timeoutMs" must be positive')
  // One stub per key for this limiter (a request's acquire and its release share it); stubs are
  // I/O objects of the request that made them, so they are never kept across requests.
  const stubs = new Map<string, DurableObjectStub<LimiterObject>>()
  const stub = (key: string) => {
    let s = stubs.get(key)
    if (s === undefined) stubs.set(key, (s = ns.get(ns.idFromName(key))))
    return s
  }
  const fail = (what: string) => (error: unknown): never => {
    if (error instanceof LimitStoreError) throw error
    throw new LimitStoreError(`${what} failed: ${error instanceof Error ? error.message : String(error)}`)
  }
  return {
    async acquire(req) {
      try {
        return await withStoreTimeout(Promise.resolve().then(() => stub(req.key).acquire(req)), opts.timeoutMs, 'limiter object')
      } catch (error) {
        return fail('limiter object')(error)
      }
    },
    async release(key, concurrency, leaseId) {
      try {
        await withStoreTimeout(Promise.resolve().then(() => stub(key).release(key, concurrency, leaseId)), opts.timeoutMs, 'limiter release')
      } catch (error) {
        fail('limiter release')(error)
      }
    },
  }
}
