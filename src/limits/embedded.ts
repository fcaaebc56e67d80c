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
 * no I/O between reading and writing state, so concurrent callers of one key
 * are serialised; the count kept is exact. Leases carry an expiry (`ttlMs`)
 * so a holder that dies without releasing frees its slot.
 *
 * State lives in memory of the object. If the runtime evicts an idle object
 * its windows start empty again; an object is only evicted after it has been
 * idle, by which time short windows have mostly emptied anyway. This is the
 * documented trade-off against one storage write per call.
 */
import { DurableObject } from 'cloudflare:workers'
import type { AcquireRequest, AcquireResult, ConcurrencyRule, Limiter } from './limiter.ts'
import { LimitStoreError } from './limiter.ts'

export class LimiterObject extends DurableObject {
  /** rule name → accepted call timestamps (ascending). */
  private readonly windows = new Map<string, number[]>()
  /** rule name → lease id → expiry (ms since epoch). */
  private readonly leases = new Map<string, Map<string, number>>()

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
    for (const rule of req.rates) {
      const log = this.windows.get(rule.name) ?? []
      log.push(now)
      this.windows.set(rule.name, log)
      remaining.set(rule.name, rule.limit - log.length)
    }
    for (const rule of req.concurrency) {
      const held = this.liveLeases(rule.name, now)
      held.set(req.leaseId, now + rule.ttlMs)
      remaining.set(rule.name, rule.max - held.size)
    }
    return { ok: true, leaseId: req.leaseId, remaining }
  }

  release(_key: string, concurrency: readonly ConcurrencyRule[], leaseId: string): void {
    for (const rule of concurrency) this.leases.get(rule.name)?.delete(leaseId)
  }

  private prune(name: string, after: number): number[] {
    const log = this.windows.get(name) ?? []
    let drop = 0
    while (drop < log.length && (log[drop] ?? 0) <= after) drop++
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

/** The Limiter over the LIMITER namespace: one object per key, one RPC per call. */
export function embeddedLimiter(ns: DurableObjectNamespace<LimiterObject>): Limiter {
  const stub = (key: string) => ns.get(ns.idFromName(key))
  return {
    async acquire(req) {
      try {
        return await stub(req.key).acquire(req)
      } catch (error) {
        throw new LimitStoreError(`limiter object failed: ${error instanceof Error ? error.message : String(error)}`)
      }
    },
    async release(key, concurrency, leaseId) {
      try {
        await stub(key).release(key, concurrency, leaseId)
      } catch (error) {
        throw new LimitStoreError(`limiter release failed: ${error instanceof Error ? error.message : String(error)}`)
      }
    },
  }
}
