// Cost of one limit check per backend: acquire + release with the rules a
// get_customer call is charged against, timed inside workerd (bench/limits/,
// started through unstable_startWorker with the inspector off). Two cases per
// backend: one hot key (every call to the same user's object) and 1000 keys
// (a new user per call: the object is created on first use). Means over n
// sequential calls (workerd's clock moves in 1 ms steps).
//   npx tsx scripts/bench/limits.ts [calls]
import { join } from 'node:path'
import { unstable_startWorker } from 'wrangler'
import { ROOT } from '../lib/dev-env.ts'
import { freePorts } from '../../test/e2e/support/server.ts'

const N = Number(process.argv[2] ?? 2000)
const BACKENDS = ['embedded']

async function main(): Promise<void> {
  const [port] = (await freePorts(1)) as [number]
  const worker = await unstable_startWorker({
    config: join(ROOT, 'bench', 'limits', 'wrangler.toml'),
    envFiles: [],
    sendMetrics: false,
    dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'warn', persist: false, watch: false, liveReload: false },
  })
  try {
    await worker.ready
    for (const backend of BACKENDS) {
      for (const keys of [1, 1000]) {
        // Warm-up run, then the measured one.
        await fetch(`http://127.0.0.1:${port}/run?backend=${backend}&n=200&keys=${keys}`).then((r) => r.text())
        const res = await fetch(`http://127.0.0.1:${port}/run?backend=${backend}&n=${N}&keys=${keys}`)
        const body = (await res.json()) as { acquireMs?: number; releaseMs?: number; error?: string }
        if (!res.ok || body.acquireMs === undefined || body.releaseMs === undefined) throw new Error(`${backend}: ${res.status} ${JSON.stringify(body).slice(0, 200)}`)
        const label = `${backend}, ${keys === 1 ? 'one hot key' : `${keys} keys (new object per key)`}`.padEnd(40)
        console.log(`limit check ${label} acquire mean ${((body.acquireMs * 1000) / N).toFixed(0).padStart(5)} µs; release mean ${((body.releaseMs * 1000) / N).toFixed(0).padStart(5)} µs (n=${N}, sequential, in workerd)`)
      }
    }
  } finally {
    await worker.dispose()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
