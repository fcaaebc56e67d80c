// Benchmark-only Worker (scripts/bench/limits.ts): times one limit check —
// the limits() middleware's acquire + release with the rules a get_customer
// call is charged against — per backend, inside workerd, so the number is the
// store round trip and nothing else. Only the bench starts it; never deploy.
//
// GET /run?backend=embedded&n=2000&keys=1 → { backend, n, keys, acquireMs, releaseMs }
// (totals over n calls: workerd's clock has 1 ms steps and advances only
// across I/O — every call is I/O — so only totals over many calls are exact).
// A new backend is one entry in BACKENDS.
import { embeddedLimiter } from '../../src/limits/embedded.ts'
import type { Limiter } from '../../src/limits/limiter.ts'
import { rulesFor } from '../../src/middleware/limits.ts'

const BACKENDS: Record<string, (env: Env) => Limiter> = {
  embedded: (env) => embeddedLimiter(env.LIMITER),
}

export { LimiterObject } from '../../src/limits/embedded.ts'
export default {
  async fetch(request, env) {
    const url = new URL(request.url)
    const backend = url.searchParams.get('backend') ?? 'embedded'
    const make = BACKENDS[backend]
    if (!make) return Response.json({ error: `unknown backend ${backend}`, known: Object.keys(BACKENDS) }, { status: 400 })
    const n = Math.min(Number(url.searchParams.get('n') ?? 1000), 20_000)
    const keys = Math.max(1, Math.min(Number(url.searchParams.get('keys') ?? 1), 10_000))
    const limiter = make(env)
    // The get_customer rules, with a rate limit no run reaches: the bench
    // times the check, never a refusal.
    const rules = rulesFor('tools/call', 'get_customer')
    const rates = rules.rates.map((r) => ({ ...r, limit: 1_000_000 }))
    let acquireMs = 0
    let releaseMs = 0
    const run = url.searchParams.get('run') ?? crypto.randomUUID()
    for (let i = 0; i < n; i++) {
      const key = `bench-${run}-${i % keys}`
      const leaseId = `${run}-${i}`
      let t = performance.now()
      const result = await limiter.acquire({ key, rates, concurrency: rules.concurrency, leaseId })
      acquireMs += performance.now() - t
      if (!result.ok) return Response.json({ error: `refused at call ${i}: ${result.rule}` }, { status: 500 })
      t = performance.now()
      await limiter.release(key, rules.concurrency, leaseId)
      releaseMs += performance.now() - t
    }
    return Response.json({ backend, n, keys, acquireMs, releaseMs })
  },
} satisfies ExportedHandler<Env>
