// Bench-only Worker entry (never deployed; scripts/bench/limits.ts starts it
// with wrangler.toml's bindings): the real Worker, with the limit store chosen
// per request by the `x-bench-limits` header so every variant runs in the same
// process over the same D1, interleaved:
//   embedded  the LimiterObject Durable Object (production default)
//   upstash   Upstash via the bench's local proxy (UPSTASH_* from BENCH_UPSTASH_URL/TOKEN)
//   off       LIMITER answers every acquire at once, without a store: the
//             middleware runs, the store round trip does not (the cost of a check)
// Without the header, BENCH_LIMITS chooses (default embedded): bench/limits-off/
// wrangler.toml sets it to off for the "limits off" row of bench/run.ts.
// POST /__bench/fetch?n=N makes N sequential bare fetches to the Upstash stand-in
// (no client library): what one HTTP store call costs the Worker at the least.
// POST /__bench/check?backend=embedded|upstash&phase=acquire|release|noop&n=N&batch=B
// makes N sequential acquire calls (lease ids B-0 … B-(N-1), limits high enough
// never to refuse), or releases them, or nothing; scripts/bench/limits.ts times
// each request from outside (a Worker's own clocks advance only at I/O, too
// coarse for one check) and subtracts the `noop` request's time.
import worker, { LimiterObject } from '../../src/index.ts'
import { DEFAULT_LIMIT_SHARDS } from '../../src/config.ts'
import { embeddedLimiter } from '../../src/limits/embedded.ts'
import type { AcquireRequest, Limiter } from '../../src/limits/limiter.ts'
import { upstashLimiter } from '../../src/limits/upstash.ts'
import { REQUEST_LIMITS } from '../../src/policy/policy.ts'

export { LimiterObject }
export { DpopReplay } from '../../src/auth/dpop-replay.ts'
export { AuditSequencer } from '../../src/audit/sequencer.ts'

interface BenchEnv extends Env {
  BENCH_UPSTASH_URL: string
  BENCH_UPSTASH_TOKEN: string
  BENCH_LIMITS?: string
}

const noStore = {
  idFromName: (name: string) => name,
  get: () => ({
    acquire: async (req: AcquireRequest) => ({ ok: true as const, leaseId: req.leaseId, remaining: new Map<string, number>() }),
    release: async () => undefined,
  }),
} as unknown as DurableObjectNamespace<LimiterObject>

/** One patched env object per variant and isolate (the config is parsed once per env object). */
const patched = new WeakMap<object, Record<string, Env>>()
function envFor(env: BenchEnv, variant: string): Env {
  let byVariant = patched.get(env)
  if (!byVariant) {
    byVariant = {
      embedded: env,
      off: { ...env, LIMITER: noStore },
      upstash: { ...env, UPSTASH_REDIS_REST_URL: env.BENCH_UPSTASH_URL, UPSTASH_REDIS_REST_TOKEN: env.BENCH_UPSTASH_TOKEN } as Env,
    }
    patched.set(env, byVariant)
  }
  const chosen = byVariant[variant]
  if (!chosen) throw new Error(`x-bench-limits: unknown variant ${variant}`)
  return chosen
}

async function check(url: URL, env: BenchEnv, ctx: ExecutionContext): Promise<Response> {
  const backend = url.searchParams.get('backend') ?? 'embedded'
  const phase = url.searchParams.get('phase') ?? 'acquire'
  const n = Number(url.searchParams.get('n') ?? 20)
  const batch = url.searchParams.get('batch') ?? '0'
  const timeoutMs = REQUEST_LIMITS.storeTimeoutMs
  const limiter: Limiter =
    backend === 'upstash'
      ? upstashLimiter({ UPSTASH_REDIS_REST_URL: env.BENCH_UPSTASH_URL, UPSTASH_REDIS_REST_TOKEN: env.BENCH_UPSTASH_TOKEN }, { timeoutMs, waitUntil: (p) => ctx.waitUntil(p) })
      : embeddedLimiter(env.LIMITER, { timeoutMs, shards: DEFAULT_LIMIT_SHARDS })
  // The shape of a tools/call check (two windows + the per-sub lease), limits never reached
  // (the cap is above the batch size: a batch holds its N leases until its release phase).
  const rates = [
    { name: 'tools_call', limit: 1e9, windowMs: 60_000 },
    { name: 'tool_get_customer', limit: 1e9, windowMs: 60_000 },
  ]
  const concurrency = [{ name: 'concurrent', max: 1000, ttlMs: 35_000 }]
  const key = `bench-check-${backend}`
  for (let i = 0; i < (phase === 'noop' ? 0 : n); i++) {
    const leaseId = `${batch}-${i}`
    if (phase === 'release') {
      await limiter.release(key, concurrency, leaseId)
      continue
    }
    const result = await limiter.acquire({ key, rates, concurrency, leaseId })
    if (!result.ok) throw new Error(`bench check refused: ${JSON.stringify(result)}`)
  }
  return Response.json({ backend, phase, n })
}

/** N sequential bare fetches of `[["PING"]]` to the store's /pipeline: the floor of any call to an HTTP store. */
async function bareFetches(url: URL, env: BenchEnv): Promise<Response> {
  const n = Number(url.searchParams.get('n') ?? 1000)
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${env.BENCH_UPSTASH_URL}/pipeline`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.BENCH_UPSTASH_TOKEN}`, 'content-type': 'application/json' },
      body: '[["PING"]]',
    })
    await res.arrayBuffer()
  }
  return Response.json({ n })
}

export default {
  async fetch(request: Request, env: BenchEnv, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url)
    if (url.pathname === '/__bench/check') return check(url, env, ctx)
    if (url.pathname === '/__bench/fetch') return bareFetches(url, env)
    return worker.fetch(request, envFor(env, request.headers.get('x-bench-limits') ?? env.BENCH_LIMITS ?? 'embedded'), ctx)
  },
} satisfies ExportedHandler<BenchEnv>
