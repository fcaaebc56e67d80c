// The audit log under load (issue #9's table, rerun): mcp-bastion with the
// AuditSequencer, against the no-controls baseline (bench/baseline), both
// started through wrangler's unstable_startWorker with the inspector off, each
// on its own persisted local D1 seeded with migrations/ + the demo data.
//
//   1. burst: BURST_CALLS (1500) get_customer calls, BURST_IN_FLIGHT (20) in
//      flight → HTTP statuses, audit rows written, audit_write_failed lines,
//      and the time from the last response until the last row is in D1.
//   2. rounds: back-to-back ROUNDS (4) of ROUND_SECONDS (8) with autocannon at
//      each of CONNECTIONS (10,1), bastion and baseline interleaved → req/s and
//      p50 per round (steady or declining?), the ratio bastion/baseline, and
//      rows written vs requests answered.
//   3. one chain's limit: APPENDS_CALLS (2000) at 100 in flight against an
//      AUDIT_CHAINS=1 server: rows/s the one sequencer put into D1.
//
// Callers are spread over SUBS (400) subjects so the per-sub rate limits
// (60 tools/call per minute, 5 in flight) are not what is measured.
// When a row is in D1 is read from the sequencer's own `audit_head` lines
// (one per flush, logged after D1 accepted the batch; seq is gap-free, so the
// head's seq is the number of rows); a second process on the local D1 would
// contend for its SQLite lock. At the end, with the Worker stopped, the rows
// are counted in D1 and `audit:verify` runs on the state folder. Prints
// Markdown; writes nothing.
//   npx tsx scripts/bench/audit-load.ts
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { unstable_startWorker } from 'wrangler'
import { demoDataStatements } from '../demo-data.ts'
import { ensureKeys, migrationFiles, ROOT, WRANGLER, type DevEnv } from '../lib/dev-env.ts'
import { mintDevToken } from '../token.ts'
import { freePorts } from '../../test/e2e/support/server.ts'

const BURST_CALLS = Number(process.env['BURST_CALLS'] ?? 1500)
const BURST_IN_FLIGHT = Number(process.env['BURST_IN_FLIGHT'] ?? 20)
const ROUNDS = Number(process.env['ROUNDS'] ?? 4)
const ROUND_SECONDS = Number(process.env['ROUND_SECONDS'] ?? 8)
const CONNECTIONS = (process.env['CONNECTIONS'] ?? '10,1').split(',').map(Number)
const APPENDS_CALLS = Number(process.env['APPENDS_CALLS'] ?? 2000)
const SUBS = Number(process.env['SUBS'] ?? 400)

const body = (i: number) => JSON.stringify({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: `cus_0${String((i % 60) + 1).padStart(2, '0')}` } } })
const BASE_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' }

// The Worker's log lines arrive on this process's stdout/stderr (wrangler forwards them).
let headSeq = 0
const events = new Map<string, number>()
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream) as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean
  stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8')
    let quiet = false
    for (const match of text.matchAll(/\{"level":"[a-z]+","event":"([a-z_]+)"[^\n]*/g)) {
      const event = match[1]!
      events.set(event, (events.get(event) ?? 0) + 1)
      if (event === 'audit_head') headSeq = Math.max(headSeq, Number(/"seq":(\d+)/.exec(match[0])?.[1] ?? 0))
      quiet = true
    }
    return quiet ? true : write(chunk, ...rest)
  }) as typeof stream.write
}

interface Server {
  url: string
  tokens: string[]
  /** Audit rows in D1 now (0 for the baseline). */
  rows: () => Promise<number>
  persist: string
  dispose: () => Promise<void>
}

function wranglerSync(args: string[]): void {
  const r = spawnSync(WRANGLER, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' } })
  if (r.status !== 0) throw new Error(`wrangler ${args.join(' ')}: ${r.stdout}\n${r.stderr}`)
}

async function start(kind: 'bastion' | 'baseline', dir: string, jwks: string, keysEnv: DevEnv): Promise<Server> {
  const config = kind === 'bastion' ? 'wrangler.toml' : 'bench/baseline/wrangler.toml'
  const persist = join(dir, kind)
  const dataFile = join(dir, 'demo-data.sql')
  for (const file of [...migrationFiles(), dataFile]) wranglerSync(['d1', 'execute', 'DB', '--local', '-c', config, '--persist-to', persist, '--yes', '--file', file])
  const [port] = (await freePorts(1)) as [number]
  const origin = `http://127.0.0.1:${port}`
  const vars = kind === 'bastion' ? { AUTH_ISSUER: origin, AUTH_AUDIENCE: `${origin}/mcp`, AUTH_JWKS: jwks } : {}
  const worker = await unstable_startWorker({
    config: join(ROOT, config),
    bindings: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, { type: 'plain_text' as const, value: v }])),
    envFiles: [],
    sendMetrics: false,
    dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'log', persist, watch: false, liveReload: false },
  })
  await worker.ready
  const env: DevEnv = { ...keysEnv, port, origin, issuer: origin, audience: `${origin}/mcp`, persistTo: persist }
  const tokens = kind === 'bastion'
    ? await Promise.all(Array.from({ length: SUBS }, (_, i) => mintDevToken({ role: 'read-only', sub: `load-${i}`, ttlSeconds: 3600, env })))
    : ['']
  return {
    url: `${origin}/mcp`,
    tokens,
    rows: async () => headSeq,
    persist,
    dispose: () => worker.dispose(),
  }
}
async function callOnce(server: Server, i: number): Promise<number> {
  const token = server.tokens[i % server.tokens.length]!
  const res = await fetch(server.url, { method: 'POST', headers: { ...BASE_HEADERS, ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body(i) })
  await res.text()
  return res.status
}

/** `total` calls with `inFlight` at a time; statuses and the time of the last response. */
async function burst(server: Server, total: number, inFlight: number): Promise<{ statuses: Map<number, number>; ms: number; lastAt: number }> {
  const statuses = new Map<number, number>()
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: inFlight }, async () => {
    for (let i = next++; i < total; i = next++) {
      const status = await callOnce(server, i).catch(() => -1)
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
    }
  }))
  const lastAt = performance.now()
  return { statuses, ms: lastAt - t0, lastAt }
}

/** Polls D1 until `expected` rows (or 120 s); ms from `since` until they were there. */
async function landed(server: Server, expected: number, since: number): Promise<{ rows: number; ms: number }> {
  for (;;) {
    const rows = await server.rows()
    const now = performance.now()
    if (rows >= expected || now - since > 120_000) return { rows, ms: now - since }
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function round(server: Server, connections: number): Promise<{ rps: number; p50: number; requests: number; non2xx: number }> {
  let i = 0
  const result = await autocannon({
    url: server.url,
    method: 'POST',
    connections,
    duration: ROUND_SECONDS,
    headers: BASE_HEADERS,
    requests: [{
      setupRequest: (req: autocannon.Request) => {
        const token = server.tokens[i++ % server.tokens.length]!
        return { ...req, body: body(i), headers: { ...req.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) } }
      },
    }],
  })
  return { rps: result.requests.average, p50: result.latency.p50, requests: result.requests.total, non2xx: result.non2xx }
}

const fmt = (n: number, d = 0) => n.toFixed(d)

/** Calls that get an audit row: every answer of an authenticated tools/call except a refusal before the audit step. */
function audited(statuses: Map<number, number>): number {
  let n = 0
  for (const [status, count] of statuses) if (status > 0 && status !== 503) n += count
  return n
}

async function main() {
  process.env['WRANGLER_SEND_METRICS'] = 'false'
  const dir = mkdtempSync(join(tmpdir(), 'bastion-audit-load-'))
  writeFileSync(join(dir, 'demo-data.sql'), demoDataStatements().join('\n') + '\n')
  const keysEnv: DevEnv = { dir, isDefault: false, port: 0, origin: '', issuer: '', audience: '', persistTo: undefined }
  const keys = await ensureKeys(keysEnv)
  const jwks = JSON.stringify(keys.publicJwks)
  const bastion = await start('bastion', dir, jwks, keysEnv)
  const baseline = await start('baseline', dir, jwks, keysEnv)
  const out: string[] = []
  try {
    // 1. The burst.
    const before = await bastion.rows()
    const b = await burst(bastion, BURST_CALLS, BURST_IN_FLIGHT)
    const land = await landed(bastion, before + audited(b.statuses), b.lastAt)
    out.push(`### 1. ${BURST_CALLS} get_customer calls, ${BURST_IN_FLIGHT} in flight`, '',
      '| answered | audit rows written | rows missing | time after the last response until the last row was in D1 | burst req/s |', '|---|---|---|---|---|',
      `| ${[...b.statuses].map(([s, n]) => `${n}× ${s}`).join(', ')} | ${land.rows - before} | ${audited(b.statuses) - (land.rows - before)} | ${fmt(land.ms)} ms | ${fmt((BURST_CALLS / b.ms) * 1000)} |`, '')

    // 2. Rounds, back to back, interleaved.
    out.push(`### 2. Back-to-back ${ROUND_SECONDS} s rounds (autocannon), bastion and baseline interleaved`, '',
      '| connections | round | bastion req/s | bastion p50 ms | non-2xx | baseline req/s | baseline p50 ms | ratio |', '|---|---|---|---|---|---|---|---|')
    let answered = 0
    const rowsBefore = await bastion.rows()
    for (const connections of CONNECTIONS) {
      const ratios: number[] = []
      for (let r = 1; r <= ROUNDS; r += 1) {
        const on = await round(bastion, connections)
        answered += on.requests
        const off = await round(baseline, connections)
        ratios.push(on.rps / off.rps)
        out.push(`| ${connections} | ${r} | ${fmt(on.rps)} | ${fmt(on.p50)} | ${on.non2xx} | ${fmt(off.rps)} | ${fmt(off.p50)} | ${fmt(on.rps / off.rps, 2)} |`)
      }
      out.push(`| ${connections} | median ratio | | | | | | ${fmt([...ratios].sort((a, c) => a - c)[Math.floor(ratios.length / 2)]!, 2)} |`)
    }
    const roundsLand = await landed(bastion, rowsBefore + answered, performance.now())
    out.push('', `Rows written for the rounds: ${roundsLand.rows - rowsBefore} of ${answered} requests answered (${fmt(roundsLand.ms)} ms after the last round).`, '')

    // 3. One chain's write rate.
    const start3 = await bastion.rows()
    const t0 = performance.now()
    const a = await burst(bastion, APPENDS_CALLS, 100)
    const land3 = await landed(bastion, start3 + audited(a.statuses), a.lastAt)
    const total = a.ms + land3.ms
    out.push(`### 3. One chain: ${APPENDS_CALLS} calls at 100 in flight`, '',
      `${land3.rows - start3} rows in ${fmt(total)} ms from the first request to the last row in D1: **${fmt(((land3.rows - start3) / (performance.now() - t0)) * 1000)} rows/s** (answers: ${[...a.statuses].map(([s, n]) => `${n}× ${s}`).join(', ')}).`)
  } finally {
    await bastion.dispose()
    await baseline.dispose()
  }
  // With the Worker stopped: what D1 holds, and whether the chain verifies.
  const count = spawnSync(WRANGLER, ['d1', 'execute', 'DB', '--local', '--persist-to', bastion.persist, '--json', '--command', 'SELECT count(*) AS n, max(seq) AS max_seq FROM audit_log'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } })
  const verify = spawnSync('npx', ['tsx', 'scripts/audit-verify.ts', '--persist-to', bastion.persist], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } })
  const stored = (JSON.parse(count.stdout) as { results: { n: number; max_seq: number }[] }[])[0]?.results[0]
  out.push('', `In D1 after the run: ${stored?.n} rows, max seq ${stored?.max_seq}; audit:verify exit ${verify.status}: ${verify.stdout.trim()}`,
    `Log lines: audit_head ${events.get('audit_head') ?? 0}, audit_write_failed ${events.get('audit_write_failed') ?? 0}, audit_flush_failed ${events.get('audit_flush_failed') ?? 0}, audit_commit_failed ${events.get('audit_commit_failed') ?? 0}`)
  rmSync(dir, { recursive: true, force: true })
  console.log(out.join('\n'))
}

main().then(() => process.exit(0), (error: unknown) => {
  console.error(error)
  process.exit(1)
})
