/**
 * Upstash limiter backend (issue #10): used when UPSTASH_REDIS_REST_URL and
 * UPSTASH_REDIS_REST_TOKEN are set.
 *
 * Rates: `@upstash/ratelimit`, sliding window (its weighted two-window
 * counter: atomic in one Lua script, so the count within a window is exact
 * under any number of parallel callers; across a window boundary the previous
 * window's share is weighted by the time left, which smooths the burst a
 * fixed window allows at the boundary at the price of two small keys per
 * subject and rule — no per-call log). One `Ratelimit` per (rule, limit,
 * window) over the request's client, all sharing one module-scope ephemeral
 * cache: a subject already refused inside its window is refused again without
 * a round trip, by any request of the isolate.
 *
 * Concurrency: one Lua script (LEASE_SCRIPT) over a sorted set per rule, lease
 * ids scored by expiry (Redis TIME + ttl): ZREMRANGEBYSCORE drops expired
 * leases, ZCARD checks the cap, ZADD takes the lease; atomic, so exact, and a
 * holder that died frees its slot once its lease expires.
 *
 * One round trip: the client auto-pipelines, and every command of a check
 * (the rate scripts and the lease script) is issued in the same tick, so they
 * travel in ONE POST /pipeline. Refused calls are compensated after the
 * answer, in waitUntil: a lease taken while a rate said no is released, and
 * rate windows that counted a call refused elsewhere are refunded (rate -1).
 * Until then the call counts, which errs toward refusing, never toward
 * letting more through. The release of an allowed call rides on the next
 * acquire of this isolate (src/limits/carry.ts): its ZREMs go in that
 * acquire's pipeline, ahead of its scripts, or alone after CARRY_RELEASE_MS.
 * So an allowed call costs one POST on the request path and, under load,
 * nothing after it.
 *
 * Failure: every HTTP call has its own AbortSignal.timeout and no retries;
 * the library's own timeout, which would report success ("fail open"), is
 * mapped to LimitStoreError like any other store error. The middleware turns
 * LimitStoreError into 503 (or a pass under RATE_LIMIT_FAIL_MODE=open).
 */
import { toHex } from '../digest.ts'
import { Ratelimit } from '@upstash/ratelimit'
import { Redis } from '@upstash/redis/cloudflare'
import type { AcquireResult, ConcurrencyRule, Limiter, RateRule } from './limiter.ts'
import { LimitStoreError, withStoreTimeout } from './limiter.ts'
import { laneOf, sendWaiting } from '../lane.ts'
import { releaseByCarry, type Release } from './carry.ts'

const PREFIX = 'bastion'

/**
 * KEYS: one sorted set per concurrency rule. ARGV[1] lease id, then per key
 * its max and ttl (ms). Returns {0, free slots per key...} when every lease
 * was taken, or {i, ms until the soonest lease of key i expires} when key i is
 * full (nothing taken).
 */
export const LEASE_SCRIPT = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local max = tonumber(ARGV[2 * i])
  if redis.call('ZSCORE', key, id) == false and redis.call('ZCARD', key) >= max then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {i, tonumber(first[2]) - now}
  end
end
local out = {0}
for i, key in ipairs(KEYS) do
  local max = tonumber(ARGV[2 * i])
  local ttl = tonumber(ARGV[2 * i + 1])
  redis.call('ZADD', key, now + ttl, id)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  out[#out + 1] = max - redis.call('ZCARD', key)
end
return out`

async function sha1Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-1', new TextEncoder().encode(text))
  return toHex(new Uint8Array(digest))
}

/** Computed on first use (not at module load: no work in the Worker's global scope). */
let leaseSha: Promise<string> | undefined

export interface UpstashSettings {
  UPSTASH_REDIS_REST_URL: string
  UPSTASH_REDIS_REST_TOKEN: string
}

export interface UpstashOptions {
  /** Bound on the check's round trip (and on each HTTP call the client makes). */
  timeoutMs: number
  /** Where compensations and `pending` go: the request's ctx.waitUntil. */
  waitUntil: (work: Promise<unknown>) => void
}

interface Store {
  redis: Redis
  limiters: Map<string, Ratelimit>
}

/** Module scope: the ephemeral cache shared by every Ratelimit of the isolate (identifier → blocked until, ms). */
const ephemeral = new Map<string, number>()

/** The isolate's release lanes, one per Upstash database (by URL). */
const databases = new Map<string, object>()
function databaseOf(url: string): object {
  let owner = databases.get(url)
  if (owner === undefined) databases.set(url, (owner = {}))
  return owner
}

/** The ZREMs of `releases`, issued now (in the caller's pipeline tick). */
function removeLeases(redis: Redis, releases: readonly Release[]): Promise<unknown> {
  return Promise.all(releases.flatMap((r) => r.concurrency.map((rule) => redis.zrem(leaseKey(r.key, rule), r.leaseId))))
}

/**
 * One auto-pipelining client per request. Not at module scope: an
 * auto-pipeline shared by concurrent requests of an isolate makes one
 * request's check wait on a fetch another request started, and workerd ties
 * I/O to the request that began it — if that request is cancelled (its client
 * went away), the fetch is cancelled and the other request's check fails with
 * it. Per request, the pipeline holds exactly this request's commands. What is
 * worth sharing — the ephemeral cache, the script hash, the runtime's
 * connection pool — is shared; the client itself is a few small objects.
 */
function storeFor(settings: UpstashSettings, timeoutMs: number): Store {
  const redis = Redis.fromEnv(settings, {
    enableAutoPipelining: true,
    // One attempt: a retry cannot fit in the time budget, and a refusal beats a late answer.
    retry: { retries: 0 },
    signal: () => AbortSignal.timeout(timeoutMs),
    enableTelemetry: false,
    // Every value we read is a number or ASCII: no base64 round trip. Read-your-writes syncs
    // across a client's requests; this client lives for one request.
    responseEncoding: false,
    readYourWrites: false,
  })
  return { redis, limiters: new Map() }
}

function ratelimitFor(store: Store, rule: RateRule, timeoutMs: number): { limiter: Ratelimit; prefix: string } {
  const prefix = `${PREFIX}:rate:${rule.name}:${rule.limit}:${rule.windowMs}`
  let limiter = store.limiters.get(prefix)
  if (limiter === undefined) {
    limiter = new Ratelimit({
      redis: store.redis,
      limiter: Ratelimit.slidingWindow(rule.limit, `${rule.windowMs} ms`),
      prefix,
      ephemeralCache: ephemeral,
      timeout: timeoutMs,
      analytics: false,
    })
    store.limiters.set(prefix, limiter)
  }
  return { limiter, prefix }
}

const leaseKey = (key: string, rule: ConcurrencyRule) => `${PREFIX}:lease:${rule.name}:${key}`

function storeError(error: unknown): LimitStoreError {
  if (error instanceof LimitStoreError) return error
  return new LimitStoreError(`upstash: ${error instanceof Error ? error.message : String(error)}`)
}

/** Runs the lease script by hash, loading it once per Redis server (NOSCRIPT → EVAL). */
function evalLease(redis: Redis, sha: string, keys: string[], args: (string | number)[]): Promise<number[]> {
  return redis.evalsha<(string | number)[], number[]>(sha, keys, args).catch((error: unknown) => {
    if (String(error).includes('NOSCRIPT')) return redis.eval<(string | number)[], number[]>(LEASE_SCRIPT, keys, args)
    throw error
  })
}

export function upstashLimiter(settings: UpstashSettings, opts: UpstashOptions): Limiter {
  if (!(opts.timeoutMs > 0)) throw new Error('upstashLimiter: "timeoutMs" must be positive')
  const store = storeFor(settings, opts.timeoutMs)
  const { redis } = store
  const lane = laneOf<Release>(databaseOf(settings.UPSTASH_REDIS_REST_URL), 'leases')

  return {
    async acquire(req): Promise<AcquireResult> {
      const sha = await (leaseSha ??= sha1Hex(LEASE_SCRIPT))
      const now = Date.now()
      const rates = req.rates.map((rule) => ({ rule, ...ratelimitFor(store, rule, opts.timeoutMs) }))
      // Already refused inside this window (ephemeral cache): no round trip, no lease.
      for (const { rule, prefix } of rates) {
        const until = ephemeral.get(`${prefix}:${req.key}`)
        if (until !== undefined && until > now) {
          return { ok: false, rule: rule.name, kind: 'rate', limit: rule.limit, retryAfterSeconds: Math.max(1, Math.ceil((until - now) / 1000)) }
        }
      }
      // Everything below is issued in this tick: one auto-pipelined POST,
      // led by the releases waiting to ride along.
      const keys = req.concurrency.map((rule) => leaseKey(req.key, rule))
      const args: (string | number)[] = [req.leaseId, ...req.concurrency.flatMap((rule) => [rule.max, rule.ttlMs])]
      const settled = await sendWaiting(
        lane,
        async (releases) => {
          const released = removeLeases(redis, releases)
          const rateCalls = rates.map(({ limiter }) => limiter.limit(req.key))
          const leaseCall = keys.length === 0 ? Promise.resolve([0]) : evalLease(redis, sha, keys, args)
          return withStoreTimeout(Promise.allSettled([Promise.all(rateCalls), leaseCall, released]), opts.timeoutMs, 'upstash')
        },
        // the carried releases reached Redis, or their owners send them again
        (outcome) => outcome[2].status === 'fulfilled',
      ).catch((error: unknown) => {
        throw storeError(error)
      })
      const [rateOutcome, leaseOutcome] = settled
      const leaseTaken = leaseOutcome.status === 'fulfilled' && leaseOutcome.value[0] === 0 && keys.length > 0
      const rateResults = rateOutcome.status === 'fulfilled' ? rateOutcome.value : []
      for (const r of rateResults) opts.waitUntil(r.pending)

      const release = () => {
        if (leaseTaken) opts.waitUntil(Promise.all(keys.map((k) => redis.zrem(k, req.leaseId))).catch(() => undefined))
      }
      const refund = () => {
        rates.forEach(({ limiter }, i) => {
          if (rateResults[i]?.success === true) opts.waitUntil(limiter.limit(req.key, { rate: -1 }).catch(() => undefined))
        })
      }

      if (rateOutcome.status === 'rejected' || leaseOutcome.status === 'rejected' || rateResults.some((r) => r.reason === 'timeout')) {
        release()
        if (rateOutcome.status === 'fulfilled') refund()
        const cause = rateOutcome.status === 'rejected' ? rateOutcome.reason : leaseOutcome.status === 'rejected' ? leaseOutcome.reason : new Error('rate check timed out')
        throw storeError(cause)
      }

      const refusedRate = rateResults.findIndex((r) => !r.success)
      if (refusedRate !== -1) {
        const rule = rates[refusedRate]!.rule
        const reset = rateResults[refusedRate]!.reset
        release()
        refund()
        return { ok: false, rule: rule.name, kind: 'rate', limit: rule.limit, retryAfterSeconds: Math.max(1, Math.ceil((reset - Date.now()) / 1000)) }
      }
      const lease = leaseOutcome.value
      if (lease[0] !== 0) {
        const rule = req.concurrency[(lease[0] ?? 1) - 1]!
        refund()
        return { ok: false, rule: rule.name, kind: 'concurrency', limit: rule.max, retryAfterSeconds: Math.max(1, Math.min(Math.ceil((lease[1] ?? 0) / 1000), 5)) }
      }
      const remaining = new Map<string, number>()
      rates.forEach(({ rule }, i) => remaining.set(rule.name, rateResults[i]!.remaining))
      req.concurrency.forEach((rule, i) => remaining.set(rule.name, lease[i + 1] ?? 0))
      return { ok: true, leaseId: req.leaseId, remaining }
    },

    async release(key, concurrency, leaseId) {
      if (concurrency.length === 0) return
      try {
        await releaseByCarry(lane, { key, concurrency, leaseId }, opts.timeoutMs, (releases) => withStoreTimeout(removeLeases(redis, releases), opts.timeoutMs, 'upstash release'))
      } catch (error) {
        throw storeError(error)
      }
    },
  }
}
