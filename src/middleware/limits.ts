// Rate and concurrency limits, after authorize(): a call that is
// refused for scope is never charged. One Limiter call per request checks
// every rate rule and takes the concurrency leases; the leases are released in
// waitUntil once the MCP layer has answered AND the work the request started
// has ended (PendingWork: a D1 statement outlives its tool's timeout).
// A lease's own TTL (the tool's timeout or D1's statement limit, whichever is
// longer, plus slack) frees it if the isolate dies first. Refusals: 429 with
// Retry-After, RateLimit-Policy and RateLimit (IETF httpapi ratelimit-headers
// draft syntax) and a JSON-RPC error; the audit layer records `rate_limited`.
// A store error or timeout (REQUEST_LIMITS.storeTimeoutMs) fails CLOSED: 503
// with Retry-After. RATE_LIMIT_FAIL_MODE=open serves the call unchecked
// instead, logging a warning per call and an error once per isolate.
// The store: Upstash Redis when UPSTASH_REDIS_REST_URL/TOKEN are set, else the
// embedded LimiterObject Durable Objects (LIMIT_SHARDS of them, by `sub`).
import type { Context } from 'hono'
import { createMiddleware } from 'hono/factory'
import { MAX_CONFIRM_TTL_SECONDS, type Config } from '../config.ts'
import type { AppEnv } from '../env.ts'
import { AppError } from '../errors.ts'
import { POLICY, REQUEST_LIMITS } from '../policy/policy.ts'
import { embeddedLimiter } from '../limits/embedded.ts'
import { upstashLimiter } from '../limits/upstash.ts'
import { PendingWork } from '../limits/pending-work.ts'
import { LimitStoreError, type ConcurrencyRule, type Limiter, type RateRule } from '../limits/limiter.ts'

/** Slack before an unreleased lease expires by itself. */
const LEASE_SLACK_MS = 5_000
/** D1's limit on one statement: a statement sent before a timeout may run this long. */
const D1_STATEMENT_LIMIT_MS = 30_000

export interface LimitRules {
  rates: RateRule[]
  concurrency: ConcurrencyRule[]
}

/** The rules one request is charged against, all from the policy. */
export function rulesFor(method: string, toolName: string | undefined): LimitRules {
  if (method !== 'tools/call') {
    const r = REQUEST_LIMITS.otherMethods
    return { rates: [{ name: 'methods', limit: r.limit, windowMs: r.windowSeconds * 1000 }], concurrency: [] }
  }
  const t = REQUEST_LIMITS.toolsCall
  const rates: RateRule[] = [{ name: 'tools_call', limit: t.limit, windowMs: t.windowSeconds * 1000 }]
  const tool = toolName === undefined ? undefined : POLICY.tools.get(toolName)
  // a call that may ask its user holds its leases while the question waits (mcp/elicitation.ts)
  const asking = tool?.confirm === undefined ? 0 : (MAX_CONFIRM_TTL_SECONDS + 2) * 1000
  const ttlMs = Math.max(tool?.timeoutMs ?? 30_000, D1_STATEMENT_LIMIT_MS) + asking + LEASE_SLACK_MS
  const concurrency: ConcurrencyRule[] = [{ name: 'concurrent', max: REQUEST_LIMITS.concurrentToolCalls, ttlMs }]
  if (tool !== undefined && toolName !== undefined) {
    rates.push({ name: `tool_${toolName}`, limit: tool.rateLimit.limit, windowMs: tool.rateLimit.windowSeconds * 1000 })
    if (tool.concurrency !== undefined) concurrency.push({ name: `concurrent_${toolName}`, max: tool.concurrency, ttlMs })
  }
  return { rates, concurrency }
}

/** `RateLimit-Policy` value: `"name";q=limit;w=seconds`, one item per rule. */
export function policyHeader(rules: LimitRules): string {
  return [
    ...rules.rates.map((r) => `"${r.name}";q=${r.limit};w=${Math.ceil(r.windowMs / 1000)}`),
    ...rules.concurrency.map((r) => `"${r.name}";q=${r.max}`),
  ].join(', ')
}

/** The configured store for this request (one stub or one module-scope client; nothing is built per call). */
export function limiterFor(c: Context<AppEnv>): Limiter {
  const store = c.var.config.limitStore
  const timeoutMs = REQUEST_LIMITS.storeTimeoutMs
  if (store.kind === 'upstash') {
    return upstashLimiter(
      { UPSTASH_REDIS_REST_URL: store.url, UPSTASH_REDIS_REST_TOKEN: store.token },
      { timeoutMs, waitUntil: (work) => c.executionCtx.waitUntil(work.catch(() => undefined)) },
    )
  }
  return embeddedLimiter(c.env.LIMITER, { timeoutMs, shards: c.var.config.limitShards })
}

/** Configurations already announced (once per isolate and configuration). */
const announced = new WeakSet<Config>()

export const limits = (make: (c: Context<AppEnv>) => Limiter = limiterFor) =>
  createMiddleware<AppEnv>(async function limits(c, next) {
    const { rpc, principal, config } = c.var
    if (!announced.has(config)) {
      announced.add(config)
      if (config.rateLimitFailMode === 'open') {
        c.var.log('error', 'rate_limit_fail_open', {
          store: config.limitStore.kind,
          detail: 'RATE_LIMIT_FAIL_MODE=open: when the limit store is unreachable, calls are served WITHOUT rate or concurrency limits',
        })
      }
    }
    const rules = rulesFor(rpc.method ?? '', rpc.toolName)
    const limiter = make(c)
    const key = principal.sub
    const leaseId = c.var.requestId
    let result
    try {
      result = await limiter.acquire({ key, rates: rules.rates, concurrency: rules.concurrency, leaseId })
    } catch (error) {
      if (!(error instanceof LimitStoreError)) throw error
      if (config.rateLimitFailMode === 'open') {
        c.var.log('warn', 'rate_limit_unchecked', { sub: key, store: config.limitStore.kind, error: error.message })
        await next()
        return
      }
      throw new AppError('unavailable', { rpcId: rpc.id, headers: { 'retry-after': '1' }, detail: `limit store: ${error.message}` })
    }
    const policy = policyHeader(rules)
    if (!result.ok) {
      c.var.log('info', 'rate_limited', { sub: key, rule: result.rule, kind: result.kind })
      throw new AppError('rate_limited', {
        message: result.kind === 'rate' ? `rate limit exceeded (${result.rule}); retry after ${result.retryAfterSeconds}s` : `too many concurrent calls (${result.rule}); retry after ${result.retryAfterSeconds}s`,
        rpcId: rpc.id,
        data: { rule: result.rule, limit: result.limit, retryAfter: result.retryAfterSeconds },
        headers: {
          'retry-after': String(result.retryAfterSeconds),
          'ratelimit-policy': policy,
          ratelimit: `"${result.rule}";r=0;t=${result.retryAfterSeconds}`,
        },
      })
    }
    const release = () => (rules.concurrency.length === 0 ? Promise.resolve() : limiter.release(key, rules.concurrency, leaseId).catch((error: unknown) => {
      c.var.log('warn', 'lease_release_failed', { error: String(error) })
    }))
    const pending = new PendingWork()
    c.set('pending', pending)
    try {
      await next()
    } finally {
      c.executionCtx.waitUntil(pending.settled().then(release))
    }
    const first = rules.rates[0]
    if (first !== undefined) {
      c.header('ratelimit-policy', policy)
      c.header('ratelimit', `"${first.name}";r=${Math.max(0, result.remaining.get(first.name) ?? 0)};t=${Math.ceil(first.windowMs / 1000)}`)
    }
  })
