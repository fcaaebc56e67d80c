// Cost of the rate and concurrency limits (issue #10), both backends, one run:
//   check       median µs of one limit check (two windows + one lease, the
//               shape of a tools/call): a request making N sequential acquire
//               calls in the Worker, timed from here, minus an empty request's
//               time, ÷ N; median over batches (the Worker's own clocks only
//               advance at I/O: too coarse for one check)
//   throughput  autocannon `tools/call get_customer` with limits off / on
//               (embedded) / on (Upstash), interleaved rounds in ONE Worker
//               process over one D1 (scripts/bench/limits-entry.ts picks the
//               variant per request), so drift hits every variant alike; the
//               order flips every round (A B C, C B A, ...) so no variant always
//               follows the same one (write-behind, alarms and GC of the one
//               before land in the next round).
//   fetch floor  Worker CPU of one bare fetch to the store stand-in: an HTTP
//               store costs at least one per call (the check; releases ride
//               on later checks), so it bounds the ratio any HTTP store can
//               reach on this machine.
// State (D1, Durable Objects) lives on tmpfs (/dev/shm) when there is one:
// local SQLite fsyncs each commit to this VM's disk while blocking the Worker
// thread, which production storage does not do; BENCH_LIMITS_STATE=disk keeps
// it under the OS temp dir (the run prints which).
// Upstash here is a local redis-server behind the loopback Upstash REST proxy
// (test/support/): its round trip is loopback + a Node proxy, not Upstash's
// network latency (add a few ms per call in production, region-dependent).
// Callers rotate over many `sub`s so no call is refused: the point is the cost
// of checking, not of refusing.
//   BENCH_SECONDS (5)  BENCH_CONNECTIONS (10)  BENCH_ROUNDS (5)  BENCH_LIMITS_USERS (600)  BENCH_LIMITS_CHECK_ONLY (0; 1: the check cost only)
//   BENCH_LIMITS_VARIANTS (embedded,upstash; `off` always runs)
// Exports runLimitsBench() for bench harnesses; `tsx scripts/bench/limits.ts` prints lines.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import autocannon from 'autocannon'
import { unstable_startWorker } from 'wrangler'
import { demoDataStatements } from '../demo-data.ts'
import { ensureKeys, migrationFiles, ROOT, WRANGLER, type DevEnv } from '../lib/dev-env.ts'
import { mintDevToken } from '../token.ts'
import { freePort } from '../../test/support/redis-server.ts'
import { cpuMs, descendantPids, workerdPids } from './proc.ts'

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5)
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 10)
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5)
/** Where the bench's state lives: tmpfs unless BENCH_LIMITS_STATE=disk or there is none. */
const STATE_ROOT = process.env['BENCH_LIMITS_STATE'] !== 'disk' && existsSync('/dev/shm') ? '/dev/shm' : tmpdir()
const SUBS = Number(process.env['BENCH_LIMITS_USERS'] ?? 600)
const ALL_VARIANTS = ['off', 'embedded', 'upstash'] as const
type VariantId = (typeof ALL_VARIANTS)[number]
/** `off` always runs (the ratio's denominator); BENCH_LIMITS_VARIANTS=embedded runs only off + embedded. */
const VARIANTS: readonly VariantId[] = ALL_VARIANTS.filter((v) => v === 'off' || (process.env['BENCH_LIMITS_VARIANTS'] ?? 'embedded,upstash').split(',').includes(v))

export interface LimitsBenchResult {
  checkMedianMicros: Record<'embedded' | 'upstash', number>
  /** CPU ms per call of the local Upstash stand-in (proxy + redis-server), NaN when not run. */
  storeCpuMsPerCall: number
  /** Worker CPU ms of one bare fetch to the store stand-in. */
  fetchFloorMs: number
  /** The directory the bench's state lived under (/dev/shm: tmpfs). */
  stateOn: string
  /** Median req/s over rounds per variant, and the ratio to `off`. */
  throughput: Record<VariantId, { reqPerSec: number; ratioToOff: number; non2xx: number; workerCpuMsPerReq: number }>
}

const BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: 'cus_007' } } })
const NO_RUN = { reqPerSec: NaN, ratioToOff: NaN, non2xx: 0, workerCpuMsPerReq: NaN }
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

function seed(persist: string, dir: string): void {
  const data = join(dir, 'demo.sql')
  writeFileSync(data, demoDataStatements().join(';\n') + ';\n')
  for (const file of [...migrationFiles(), data]) {
    const r = spawnSync(WRANGLER, ['d1', 'execute', 'DB', '--local', '-c', join(ROOT, 'wrangler.toml'), '--persist-to', persist, '--yes', '--file', file], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' },
    })
    if (r.status !== 0) throw new Error(`seeding failed:\n${r.stdout}\n${r.stderr}`)
  }
}

export async function runLimitsBench(log: (line: string) => void = console.log): Promise<LimitsBenchResult> {
  const dir = mkdtempSync(join(STATE_ROOT, 'bastion-bench-limits-'))
  // redis-server + the Upstash proxy in a process (group) of their own, away from autocannon's event loop.
  const local = spawn(join(ROOT, 'node_modules/.bin/tsx'), [join(ROOT, 'scripts/lib/upstash-local.ts')], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'inherit'] })
  const [line] = (await once(local.stdout!, 'data')) as [Buffer]
  const { url: upstashUrl, token } = JSON.parse(line.toString()) as { url: string; token: string }
  const proxy = { url: upstashUrl }
  const port = await freePort()
  const origin = `http://127.0.0.1:${port}`
  const env: DevEnv = { dir, isDefault: false, port, origin, issuer: origin, audience: `${origin}/mcp`, persistTo: join(dir, 'state') }
  let worker: Awaited<ReturnType<typeof unstable_startWorker>> | undefined
  try {
    seed(env.persistTo!, dir)
    const keys = await ensureKeys(env)
    const plain = (value: string) => ({ type: 'plain_text' as const, value })
    const before = new Set(workerdPids())
    worker = await unstable_startWorker({
      config: join(ROOT, 'wrangler.toml'),
      entrypoint: join(ROOT, 'scripts/bench/limits-entry.ts'),
      bindings: {
        AUTH_ISSUER: plain(origin),
        AUTH_AUDIENCE: plain(`${origin}/mcp`),
        AUTH_JWKS: plain(JSON.stringify(keys.publicJwks)),
        BENCH_UPSTASH_URL: plain(proxy.url),
        BENCH_UPSTASH_TOKEN: plain(token),
      },
      envFiles: [],
      sendMetrics: false,
      dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'warn', persist: env.persistTo!, watch: false, liveReload: false },
    })
    await worker.ready

    // Limit check cost, per backend.
    const checkMedianMicros = { embedded: NaN, upstash: NaN }
    const CHECK_N = 20
    const CHECK_BATCHES = 50
    const timed = async (query: string): Promise<number> => {
      const t0 = performance.now()
      const res = await fetch(`${origin}/__bench/check?${query}`, { method: 'POST' })
      if (!res.ok) throw new Error(`check bench (${query}): ${res.status} ${await res.text()}`)
      await res.arrayBuffer()
      return performance.now() - t0
    }
    for (const backend of ['embedded', 'upstash'] as const) {
      const perCheck: number[] = []
      for (let b = -3; b < CHECK_BATCHES; b++) {
        const empty = await timed(`backend=${backend}&phase=noop&n=0`)
        const batch = await timed(`backend=${backend}&phase=acquire&n=${CHECK_N}&batch=${b + 3}`)
        await timed(`backend=${backend}&phase=release&n=${CHECK_N}&batch=${b + 3}`)
        if (b >= 0) perCheck.push(((batch - empty) / CHECK_N) * 1000)
      }
      checkMedianMicros[backend] = median(perCheck)
      log(`limits check ${backend.padEnd(9)} median ${checkMedianMicros[backend].toFixed(0).padStart(6)} µs per check (median of ${CHECK_BATCHES} batches of ${CHECK_N} sequential checks, each batch timed from outside minus an empty request; two windows + one lease)`)
    }

    if (process.env['BENCH_LIMITS_CHECK_ONLY'] === '1') return { checkMedianMicros, storeCpuMsPerCall: NaN, fetchFloorMs: NaN, stateOn: STATE_ROOT, throughput: { off: NO_RUN, embedded: NO_RUN, upstash: NO_RUN } }
    // Throughput: enough subs that none reaches 60 calls a minute.
    let minted = 0
    const tokens = async (n: number) => Promise.all(Array.from({ length: n }, () => mintDevToken({ role: 'read-only', sub: `bench-limits-${minted++}`, ttlSeconds: 3600, env })))
    // SUBS subs: at ~500 req/s a variant's rounds give each well under 60 calls in any minute. Local
    // objects are evicted after 10 s idle (Cloudflare: 70–140 s), so each round is primed (below).
    const pool = await tokens(SUBS)
    let next = 0
    const load = (variant: VariantId, seconds: number, amount?: number) =>
      autocannon({
        url: `${origin}/mcp`,
        method: 'POST',
        connections: CONNECTIONS,
        ...(amount === undefined ? { duration: seconds } : { amount }),
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', 'x-bench-limits': variant },
        requests: [{ body: BODY, setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer ${pool[next++ % pool.length]}` } }) }],
      })
    for (const v of VARIANTS) await load(v, 3)
    // After the warm-up: every workerd process the Worker started (some start with the first requests).
    const pids = workerdPids().filter((p) => !before.has(p))
    log(`limits workerd processes measured: ${pids.length}`)
    const rps: Record<VariantId, number[]> = { off: [], embedded: [], upstash: [] }
    const non2xx: Record<VariantId, number> = { off: 0, embedded: 0, upstash: 0 }
    // The Worker's own CPU (workerd: the Worker and its objects; not the proxy, redis-server or autocannon).
    const cpu: Record<VariantId, number[]> = { off: [], embedded: [], upstash: [] }
    // The local store's CPU (the Node proxy + redis-server): on Upstash this runs on Upstash's machines.
    const storeCpu: number[] = []
    const storePids = local.pid === undefined ? [] : descendantPids(local.pid)
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
        // Untimed priming: one call per sub, so every limiter object is live, as for subs that are calling.
        const primed = await load(v, 0, SUBS)
        non2xx[v] += primed.non2xx + primed.errors
        const c0 = cpuMs(pids)
        const s0 = cpuMs(storePids)
        const r = await load(v, SECONDS)
        await new Promise((resolve) => setTimeout(resolve, 1500)) // lease releases and write-behind flushes of the round
        cpu[v].push((cpuMs(pids) - c0) / Math.max(1, r.requests.total))
        if (v === 'upstash') storeCpu.push((cpuMs(storePids) - s0) / Math.max(1, r.requests.total))
        rps[v].push(r.requests.average)
        non2xx[v] += r.non2xx + r.errors
      }
    }
    // The floor of an HTTP store call: bare fetches, Worker CPU each (median of 3 runs of 1000).
    const floors: number[] = []
    for (let i = 0; i < 3; i++) {
      const c0 = cpuMs(pids)
      const res = await fetch(`${origin}/__bench/fetch?n=1000`, { method: 'POST' })
      if (!res.ok) throw new Error(`fetch floor: ${res.status} ${await res.text()}`)
      await new Promise((resolve) => setTimeout(resolve, 200))
      floors.push((cpuMs(pids) - c0) / 1000)
    }
    const fetchFloorMs = median(floors)
    const off = median(rps.off)
    const throughput = Object.fromEntries(
      VARIANTS.map((v) => [v, { reqPerSec: median(rps[v]), ratioToOff: median(rps[v]) / off, non2xx: non2xx[v], workerCpuMsPerReq: median(cpu[v]) }]),
    ) as LimitsBenchResult['throughput']
    for (const v of VARIANTS) {
      const t = throughput[v]
      log(`limits throughput ${v.padEnd(9)} ${t.reqPerSec.toFixed(0).padStart(5)} req/s  ×${t.ratioToOff.toFixed(2)} of off  Worker CPU ${t.workerCpuMsPerReq.toFixed(2)} ms/req (off ÷ this ${(throughput.off.workerCpuMsPerReq / t.workerCpuMsPerReq).toFixed(2)})  (median of ${ROUNDS} interleaved ${SECONDS} s rounds, ${CONNECTIONS} connections; non-2xx ${t.non2xx})`)
    }
    log(`limits state on ${STATE_ROOT === '/dev/shm' ? 'tmpfs (/dev/shm)' : `disk (${STATE_ROOT})`}`)
    const offCpu = throughput.off.workerCpuMsPerReq
    log(`limits bare fetch to the store: ${(fetchFloorMs * 1000).toFixed(0)} µs Worker CPU each; an HTTP store needs 1 per call (the check; releases ride on later checks): with off at ${offCpu.toFixed(2)} ms/req, at best ×${(offCpu / (offCpu + fetchFloorMs)).toFixed(2)} of off in Worker CPU here, before any client or store work`)
    log(`limits local Upstash store (Node proxy + redis-server) CPU ${median(storeCpu).toFixed(2)} ms per call on the same ${cpus().length} cores (not the Worker's: on Upstash it runs on their machines)`)
    return { checkMedianMicros, throughput, storeCpuMsPerCall: median(storeCpu), fetchFloorMs, stateOn: STATE_ROOT }
  } finally {
    await worker?.dispose()
    if (local.pid !== undefined) process.kill(-local.pid, 'SIGTERM')
    rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runLimitsBench().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    },
  )
}
