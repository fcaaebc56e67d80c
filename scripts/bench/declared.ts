// Cost per call of declared tools and of row scope, measured inside workerd
// (scripts/bench/declared-entry.ts, started with wrangler's unstable_startWorker,
// inspector off, over a local D1 seeded with migrations/ and the demo data on
// tmpfs), each next to its baseline and interleaved request by request:
//   - get_customer and search_products declared (tools.config.ts) vs the same
//     tool hand-written with the same SQL;
//   - execute_query (guard, EXPLAIN gate, work budget, run) under a customer's
//     row scope vs unscoped, cycling through the shared legit queries.
// Each request makes N calls; its time minus a `noop` request's, over N, is
// the cost of one call.
//   npx tsx scripts/bench/declared.ts
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { unstable_startWorker } from 'wrangler'
import { demoDataStatements } from '../demo-data.ts'
import { migrationFiles, ROOT, WRANGLER } from '../lib/dev-env.ts'
import { freePort } from '../../test/support/redis-server.ts'

const N = 20
const BATCHES = Number(process.env['BENCH_ITERATIONS'] ?? 40)
const PAIRS = [
  ['declared-get_customer', 'hand-get_customer', 'get_customer: declared vs hand-written'],
  ['declared-search_products', 'hand-search_products', 'search_products: declared vs hand-written'],
  ['query-scoped', 'query-unscoped', 'execute_query: scoped (customers, orders, tickets by claim.customer) vs unscoped'],
] as const
const STATE_ROOT = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function main(): Promise<void> {
  const dir = mkdtempSync(join(STATE_ROOT, 'bastion-bench-declared-'))
  const persist = join(dir, 'state')
  const data = join(dir, 'demo.sql')
  writeFileSync(data, demoDataStatements().join('\n') + '\n')
  for (const file of [...migrationFiles(), data]) {
    const r = spawnSync(WRANGLER, ['d1', 'execute', 'DB', '--local', '-c', join(ROOT, 'wrangler.toml'), '--persist-to', persist, '--yes', '--file', file], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' } })
    if (r.status !== 0) throw new Error(`seeding failed:\n${r.stdout}\n${r.stderr}`)
  }
  const port = await freePort()
  const worker = await unstable_startWorker({
    config: join(ROOT, 'wrangler.toml'),
    entrypoint: join(ROOT, 'scripts/bench/declared-entry.ts'),
    envFiles: [],
    sendMetrics: false,
    dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'warn', persist, watch: false, liveReload: false },
  })
  try {
    await worker.ready
    const origin = `http://127.0.0.1:${port}`
    const timed = async (kind: string, n: number): Promise<number> => {
      const t0 = performance.now()
      const res = await fetch(`${origin}/__bench/declared?case=${kind}&n=${n}`, { method: 'POST' })
      const text = await res.text()
      if (!res.ok) throw new Error(`${kind}: ${res.status} ${text}`)
      return performance.now() - t0
    }
    await timed('query-scoped', 40) // analyze-free warm-up of every path
    for (const [a, b, title] of PAIRS) {
      const per: Record<string, number[]> = { [a]: [], [b]: [] }
      for (let batch = -3; batch < BATCHES; batch++) {
        const noop = await timed('noop', N)
        for (const kind of batch % 2 === 0 ? [a, b] : [b, a]) {
          const ms = await timed(kind, N)
          if (batch >= 0) per[kind]!.push(((ms - noop) / N) * 1000)
        }
      }
      const ma = median(per[a]!)
      const mb = median(per[b]!)
      console.log(`${title}: ${ma.toFixed(0)} µs vs ${mb.toFixed(0)} µs per call: ×${(ma / mb).toFixed(3)} (median of ${BATCHES} interleaved batches of ${N} calls)`)
    }
  } finally {
    await worker.dispose()
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
