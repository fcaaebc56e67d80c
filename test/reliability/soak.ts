// npm run test:reliability (second part) — soak and faults against the real
// Worker (src/index.ts through wrangler's unstable_startWorker, inspector off,
// loopback, its own persisted local D1 seeded with migrations/ + demo data).
//
// Soak: SOAK_CALLS (5000) tools/call at SOAK_IN_FLIGHT (50) in flight over 10
// users (read-only, editor, admin), then SOAK_AGENT_CALLS (5000) get_customer
// calls over SOAK_AGENTS (2000) read-only subjects round robin (each of them
// exactly one row). The mix: mixed tools and outcomes: successes, a
// mutation (create_ticket), invalid arguments, 403 (a tool the role lacks),
// 429 (60 calls per user per minute, 5 in flight, are far below the offered
// load). Then, from the D1 file:
//   - every answered call has exactly one audit row (by X-Request-Id), or,
//     past its user's refusal budget, is counted in one of the user's
//     aggregate rows (per user, the calls without a row of their own are
//     exactly the aggregates' counts), and there is no row for a request
//     that was not made;
//   - the hash chain verifies (scripts/audit-verify.ts, the same code);
//   - no user got more calls past the limiter than the policy allows: the
//     rows charged (every outcome but rate_limited and denied) of one user in
//     any 59 s span are at most 60 (1 s of slack for the gap between the
//     audit timestamp, taken when the request starts, and the limiter's);
//   - no 5xx.
// Faults:
//   (b) D1 failing during a mutation: a trigger that aborts every UPDATE of
//       `orders` is added to the live database (a real SQLite error inside the
//       mutation's batch); update_order is refused with a generic error and a
//       request id, the order is unchanged and no `ok` audit row exists; with
//       the trigger gone the same call succeeds.
//   (a) limit store stopped mid-run: a second Worker on the Upstash backend
//       (a real redis-server behind the loopback Upstash REST proxy of
//       test/support/). Calls flow, then the store's endpoint is stopped:
//       every call during the outage answers 503 (none is served unchecked);
//       the endpoint comes back on the same address and calls are served
//       again by the same Worker, without a restart. (The embedded backend
//       is a Durable Object inside the Worker's own runtime: it has no store
//       that can be stopped apart from the Worker.)
//   (c) audit sequencer restarted mid-run: calls at 50 in flight against a
//       fresh Worker; after half have been answered its runtime — and with it
//       every AuditSequencer object — is stopped (calls in flight then get no
//       answer) and a new one is started on the same persisted state and
//       port. The calls are mutations (create_ticket): their audit row is
//       accepted by the sequencer before the answer, so every call answered
//       has its row once the sequencers drained their outboxes, and the
//       chains verify. (A read's row is appended after its answer, in
//       waitUntil: a restart inside that window can cut it — that is the
//       read path's documented trade-off, not a lost accepted row.)
// Every loop is bounded in count and time.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { unstable_startWorker } from 'wrangler'
import { demoDataStatements } from '../../scripts/demo-data.ts'
import { main as auditVerify } from '../../scripts/audit-verify.ts'
import { ensureKeys, migrationFiles, ROOT, WRANGLER, type DevEnv } from '../../scripts/lib/dev-env.ts'
import { mintDevToken } from '../../scripts/token.ts'
import { freePorts } from '../e2e/support/server.ts'
import { redisServerBinary, startRedis } from '../support/redis-server.ts'
import { startUpstashProxy } from '../support/upstash-proxy.ts'

const CALLS = Number(process.env['SOAK_CALLS'] ?? 5000)
const IN_FLIGHT = Number(process.env['SOAK_IN_FLIGHT'] ?? 50)
const SOAK_DEADLINE_MS = Number(process.env['SOAK_DEADLINE_MS'] ?? 240_000)
/** The many-agents phase: SOAK_AGENT_CALLS get_customer calls over SOAK_AGENTS read-only subjects, round robin. */
const AGENTS = Number(process.env['SOAK_AGENTS'] ?? 2000)
const AGENT_CALLS = Number(process.env['SOAK_AGENT_CALLS'] ?? 5000)
const REQUEST_TIMEOUT_MS = 60_000
const ISSUER = 'https://issuer.soak.invalid'
const AUDIENCE = 'https://bastion.soak.invalid/mcp'
const RATE_LIMIT = 60
const RATE_SPAN_MS = 59_000

type Role = 'read-only' | 'editor' | 'admin'
interface User {
  sub: string
  role: Role
  auth: string
}
interface Call {
  name: string
  arguments: Record<string, unknown>
  /** what the call should end as, before limits: 'ok' | 'denied' | 'invalid' */
  expect: 'ok' | 'denied' | 'invalid'
}
interface Answer {
  sub: string
  tool: string
  expect: Call['expect']
  status: number
  requestId: string | null
  rpcError: boolean
  isError: boolean
  /** the body, kept for 403 and 5xx answers */
  body?: string
}

function d1(persist: string, sql: string): Record<string, unknown>[] {
  const r = spawnSync(WRANGLER, ['d1', 'execute', 'DB', '--local', '-c', 'wrangler.toml', '--persist-to', persist, '--json', '--command', sql], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' },
  })
  if (r.status !== 0) throw new Error(`d1 ${sql.slice(0, 60)}: ${r.stderr || r.stdout}`)
  const parsed = JSON.parse(r.stdout) as { results: Record<string, unknown>[] }[]
  return parsed.flatMap((p) => p.results)
}

function seed(persist: string, dir: string): void {
  const dataFile = join(dir, 'demo-data.sql')
  writeFileSync(dataFile, demoDataStatements().join('\n') + '\n')
  for (const file of [...migrationFiles(), dataFile]) {
    const r = spawnSync(WRANGLER, ['d1', 'execute', 'DB', '--local', '-c', 'wrangler.toml', '--persist-to', persist, '--yes', '--file', file], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' },
    })
    if (r.status !== 0) throw new Error(`seeding failed: ${r.stderr || r.stdout}`)
  }
}

/** The call user `u` makes as its `k`-th: mostly successes, some refusals of each kind. */
function callFor(u: User, k: number): Call {
  const cus = `cus_${String((k % 20) + 1).padStart(3, '0')}`
  const pick = k % 10
  if (pick === 0) return { name: 'get_customer', arguments: { customerId: 'not an id' }, expect: 'invalid' }
  if (pick === 1) {
    // A tool this role lacks (admin has every scope: it asks for an unknown argument instead).
    if (u.role === 'read-only') return { name: 'create_ticket', arguments: { customerId: cus, subject: 's', body: 'b' }, expect: 'denied' }
    if (u.role === 'editor') return { name: 'execute_query', arguments: { query: 'SELECT 1' }, expect: 'denied' }
    return { name: 'list_orders', arguments: { bogus: 1 }, expect: 'invalid' }
  }
  if (pick === 2 && u.role !== 'read-only') {
    return { name: 'create_ticket', arguments: { customerId: cus, subject: `soak ${u.sub} ${k}`, body: 'written by the soak test', priority: 'low' }, expect: 'ok' }
  }
  if (pick === 3) return { name: 'list_orders', arguments: { customerId: cus }, expect: 'ok' }
  // The editor role has no products:read (src/policy/policy.ts): for it this is a 403.
  if (pick === 4) return { name: 'search_products', arguments: { query: 'a' }, expect: u.role === 'editor' ? 'denied' : 'ok' }
  return { name: 'get_customer', arguments: { customerId: cus }, expect: 'ok' }
}

/**
 * One tools/call on a new connection (node:http, no agent), for the single calls
 * that follow a pause of seconds (a wrangler d1 command): fetch would reuse a
 * keep-alive socket the server may be closing right then ("other side closed"),
 * a harness race, not an answer of the Worker.
 */
function postFresh(url: string, auth: string, name: string, args: Record<string, unknown>): Promise<{ status: number; requestId: string | null; body: string }> {
  const payload = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } })
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: auth, 'content-length': Buffer.byteLength(payload) },
      timeout: REQUEST_TIMEOUT_MS,
    }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, requestId: (res.headers['x-request-id'] as string | undefined) ?? null, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)))
    req.on('error', reject)
    req.end(payload)
  })
}

async function post(url: string, auth: string, name: string, args: Record<string, unknown>): Promise<{ status: number; requestId: string | null; body: string }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: auth },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
  return { status: response.status, requestId: response.headers.get('x-request-id'), body: await response.text() }
}

async function waitForAuditRows(persist: string, expected: number): Promise<number> {
  const until = Date.now() + 90_000
  let n = 0
  while (Date.now() < until) {
    n = Number(d1(persist, 'SELECT coalesce(sum(coalesce(count, 1)), 0) AS n FROM audit_log')[0]?.['n'] ?? 0)
    if (n >= expected) return n
    await new Promise((r) => setTimeout(r, 2000))
  }
  return n
}

async function main(): Promise<void> {
  const only = process.env['SOAK_ONLY']
  if (only === 'c' || only === 'a') {
    const keyDir = mkdtempSync(join(tmpdir(), 'bastion-soak-keys-'))
    const keys = await ensureKeys({ dir: keyDir, isDefault: false, port: 0, origin: '', issuer: ISSUER, audience: AUDIENCE, persistTo: undefined })
    await (only === 'c' ? sequencerRestart(keys.publicJwks, keyDir) : limitStoreOutage(keys.publicJwks, keyDir))
    rmSync(keyDir, { recursive: true, force: true })
    console.log(`fault (${only}): passed`)
    process.exit(0)
  }
  const t0 = Date.now()
  const dir = mkdtempSync(join(tmpdir(), 'bastion-soak-'))
  const persist = join(dir, 'state')
  const [port] = (await freePorts(1)) as [number]
  const origin = `http://127.0.0.1:${port}`
  const env: DevEnv = { dir, isDefault: false, port, origin, issuer: ISSUER, audience: AUDIENCE, persistTo: persist }
  seed(persist, dir)
  const keys = await ensureKeys(env)
  const plain = (value: string) => ({ type: 'plain_text' as const, value })
  const worker = await unstable_startWorker({
    config: join(ROOT, 'wrangler.toml'),
    bindings: { AUTH_ISSUER: plain(ISSUER), AUTH_AUDIENCE: plain(AUDIENCE), AUTH_JWKS: plain(JSON.stringify(keys.publicJwks)), LOG_LEVEL: plain('warn') },
    envFiles: [],
    sendMetrics: false,
    dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'warn', persist, watch: false, liveReload: false },
  })
  let failed = false
  try {
    await worker.ready
    const url = `${origin}/mcp`
    const roles: Role[] = ['read-only', 'editor', 'admin']
    const users: User[] = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const role = roles[i % 3]!
        const sub = `soak-${i}-${role}`
        return { sub, role, auth: `Bearer ${await mintDevToken({ role, sub, ttlSeconds: 3600, env })}` }
      }),
    )

    // ---- soak
    const answers: Answer[] = []
    const lost: string[] = []
    let next = 0
    const soakStart = Date.now()
    const worker1 = async () => {
      while (next < CALLS && Date.now() - soakStart < SOAK_DEADLINE_MS) {
        const k = next++
        const user = users[k % users.length]!
        const call = callFor(user, Math.floor(k / users.length))
        try {
          const r = await post(url, user.auth, call.name, call.arguments)
          let rpcError = false
          let isError = false
          try {
            const body = JSON.parse(r.body) as { error?: unknown; result?: { isError?: boolean } }
            rpcError = body.error !== undefined
            isError = body.result?.isError === true
          } catch {
            rpcError = true
          }
          answers.push({ sub: user.sub, tool: call.name, expect: call.expect, status: r.status, requestId: r.requestId, rpcError, isError, ...(r.status >= 403 && r.status !== 429 ? { body: r.body.slice(0, 300) } : {}) })
        } catch (error) {
          lost.push(`${call.name} for ${user.sub}: ${error instanceof Error ? error.message : String(error)}`)
        }
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker1))
    const soakSeconds = (Date.now() - soakStart) / 1000
    const byStatus = new Map<number, number>()
    for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1)
    console.log(
      `soak: ${answers.length}/${CALLS} calls answered in ${soakSeconds.toFixed(0)} s at ${IN_FLIGHT} in flight over ${users.length} users: ` +
        [...byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ') +
        (lost.length ? `; ${lost.length} without an answer (first: ${lost[0]})` : ''),
    )
    assert.equal(lost.length, 0, 'every call gets an answer')
    assert.equal(answers.length, CALLS, `all ${CALLS} calls made within ${SOAK_DEADLINE_MS / 1000} s`)
    const fivexx = answers.filter((a) => a.status >= 500)
    if (fivexx.length) console.error(`5xx answers, first: ${fivexx[0]!.tool}: ${fivexx[0]!.body}`)
    assert.equal(fivexx.length, 0, `no 5xx (got ${fivexx.length})`)
    assert.ok(answers.every((a) => a.requestId), 'every answer carries an X-Request-Id')
    // Each kind of outcome happened, and each as expected.
    const ok = answers.filter((a) => a.status === 200 && !a.rpcError && !a.isError)
    const denied = answers.filter((a) => a.status === 403)
    const limited = answers.filter((a) => a.status === 429)
    const invalid = answers.filter((a) => a.status === 200 && (a.rpcError || a.isError))
    console.log(`soak outcomes: ${ok.length} ok, ${invalid.length} invalid input, ${denied.length} denied (403), ${limited.length} rate limited (429)`)
    const wrongly = denied.filter((a) => a.expect !== 'denied')
    assert.equal(wrongly.length, 0, `only calls outside the role were denied (first: ${wrongly[0]?.tool} by ${wrongly[0]?.sub}: ${wrongly[0]?.body})`)
    assert.ok(ok.every((a) => a.expect === 'ok'), 'no refused call succeeded')
    assert.ok(ok.length > 0 && invalid.length > 0 && denied.length > 0 && limited.length > 0, 'the mix has every outcome')

    assert.ok(answers.filter((a) => a.expect === 'denied').every((a) => a.status === 403), 'every call outside the role was denied')

    // ---- audit: one row per answered call (or a count in an aggregate row, past the refusal budget), nothing else
    const rows = await waitForAuditRows(persist, answers.length)
    const audit = d1(persist, 'SELECT request_id, sub, ts, outcome, count, first_request_id, last_request_id FROM audit_log ORDER BY seq')
    const singles = audit.filter((r) => r['count'] === null)
    const aggregates = audit.filter((r) => r['count'] !== null)
    const perId = new Map<string, number>()
    for (const row of singles) perId.set(String(row['request_id']), (perId.get(String(row['request_id'])) ?? 0) + 1)
    const folded = answers.filter((a) => !perId.has(a.requestId!))
    // Per user, the calls without a row of their own are exactly what its aggregate rows count.
    let missing = 0
    for (const user of users) {
      const without = folded.filter((a) => a.sub === user.sub).length
      const counted = aggregates.filter((r) => r['sub'] === user.sub).reduce((n, r) => n + Number(r['count']), 0)
      missing += Math.abs(without - counted)
    }
    const doubled = [...perId].filter(([, n]) => n > 1)
    const asked = new Set(answers.map((a) => a.requestId))
    const foldedIds = new Set(folded.map((a) => a.requestId))
    const strangers = [...perId.keys()].filter((id) => !asked.has(id))
      .concat(aggregates.flatMap((r) => [String(r['first_request_id']), String(r['last_request_id'])]).filter((id) => !foldedIds.has(id)))
    console.log(`soak audit: ${rows} calls in ${audit.length} rows (${aggregates.length} aggregates counting ${folded.length}) for ${answers.length} answered calls; ${missing} calls neither with a row nor counted, ${doubled.length} request ids with more than one, ${strangers.length} rows for no call`)
    assert.equal(missing, 0, 'every answered call has an audit row or is counted in an aggregate row')
    assert.equal(doubled.length, 0, 'no call has two audit rows')
    assert.equal(strangers.length, 0, 'no audit row without a call')

    // ---- many agents: every call of thousands of short-lived subjects has its row
    const agents = await Promise.all(
      Array.from({ length: AGENTS }, async (_, i) => `Bearer ${await mintDevToken({ role: 'read-only', sub: `agent-${i}`, ttlSeconds: 3600, env })}`),
    )
    const agentIds: string[] = []
    const agentFailures: string[] = []
    let nextAgentCall = 0
    const agentStart = Date.now()
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (nextAgentCall < AGENT_CALLS) {
          const k = nextAgentCall++
          try {
            const r = await post(url, agents[k % agents.length]!, 'get_customer', { customerId: 'cus_007' })
            if (r.status === 200 && r.requestId && !r.body.includes('"isError":true')) agentIds.push(r.requestId)
            else agentFailures.push(`${r.status}: ${r.body.slice(0, 200)}`)
          } catch (error) {
            agentFailures.push(error instanceof Error ? error.message : String(error))
          }
        }
      }),
    )
    await waitForAuditRows(persist, answers.length + AGENT_CALLS)
    const agentRows = new Map<string, number>()
    for (const row of d1(persist, "SELECT request_id FROM audit_log WHERE sub LIKE 'agent-%'")) agentRows.set(String(row['request_id']), (agentRows.get(String(row['request_id'])) ?? 0) + 1)
    const agentMissing = agentIds.filter((id) => agentRows.get(id) !== 1).length
    console.log(`soak agents: ${agentIds.length}/${AGENT_CALLS} calls served in ${((Date.now() - agentStart) / 1000).toFixed(0)} s at ${IN_FLIGHT} in flight over ${AGENTS} subjects; ${agentRows.size} rows; ${agentMissing} served calls without exactly one row${agentFailures.length ? `; first failure: ${agentFailures[0]}` : ''}`)
    assert.equal(agentFailures.length, 0, 'every agent call is served')
    assert.equal(agentRows.size, AGENT_CALLS, `exactly ${AGENT_CALLS} agent rows`)
    assert.equal(agentMissing, 0, 'every agent call has exactly one audit row')

    // ---- limits: what passed the limiter stays within the policy
    let worst = 0
    for (const user of users) {
      const times = audit
        .filter((r) => r['sub'] === user.sub && r['outcome'] !== 'rate_limited' && r['outcome'] !== 'denied')
        .map((r) => Date.parse(String(r['ts'])))
        .sort((a, b) => a - b)
      let lo = 0
      for (let hi = 0; hi < times.length; hi++) {
        while (times[hi]! - times[lo]! > RATE_SPAN_MS) lo++
        worst = Math.max(worst, hi - lo + 1)
      }
    }
    console.log(`soak limits: at most ${worst} charged calls of one user in any ${RATE_SPAN_MS / 1000} s (policy: ${RATE_LIMIT} per 60 s)`)
    assert.ok(worst <= RATE_LIMIT, `a user exceeded its rate limit: ${worst} > ${RATE_LIMIT}`)

    // ---- fault (b): D1 fails inside the mutation
    const editor = { sub: 'fault-editor', auth: `Bearer ${await mintDevToken({ role: 'editor', sub: 'fault-editor', ttlSeconds: 3600, env })}` }
    const pending = d1(persist, "SELECT id, status FROM orders WHERE status = 'pending' ORDER BY id LIMIT 1")[0]
    assert.ok(pending, 'the demo data has a pending order')
    const orderId = String(pending['id'])
    d1(persist, "CREATE TRIGGER soak_fault BEFORE UPDATE ON orders BEGIN SELECT RAISE(ABORT, 'injected fault: orders are read-only'); END")
    const refused = await postFresh(url, editor.auth, 'update_order', { orderId, status: 'paid', note: 'during the fault' })
    const statusDuring = d1(persist, `SELECT status FROM orders WHERE id = '${orderId}'`)[0]?.['status']
    console.log(`fault (b): update_order during the D1 fault answered ${refused.status}: ${refused.body.slice(0, 200)}`)
    assert.equal(statusDuring, 'pending', 'the failed mutation changed nothing')
    assert.ok(!refused.body.includes('injected fault'), 'the database error does not reach the client')
    const refusedBody = JSON.parse(refused.body) as { error?: { data?: { requestId?: string } }; result?: { isError?: boolean; content?: { text?: string }[] } }
    assert.ok(refusedBody.error !== undefined || refusedBody.result?.isError === true, 'the client is told the call failed')
    assert.ok(refused.requestId && refused.body.includes(refused.requestId), 'the failure names the request id')
    d1(persist, 'DROP TRIGGER soak_fault')
    const retried = await postFresh(url, editor.auth, 'update_order', { orderId, status: 'paid', note: 'after the fault' })
    const statusAfter = d1(persist, `SELECT status FROM orders WHERE id = '${orderId}'`)[0]?.['status']
    console.log(`fault (b): after the fault update_order answered ${retried.status}; order ${orderId} is ${String(statusAfter)}`)
    assert.equal(retried.status, 200)
    assert.equal(statusAfter, 'paid', 'the same mutation succeeds once D1 is healthy, without a restart')
    await waitForAuditRows(persist, answers.length + 2)
    const faultRows = d1(persist, `SELECT request_id, outcome FROM audit_log WHERE sub = 'fault-editor' ORDER BY seq`)
    assert.ok(!faultRows.some((r) => r['request_id'] === refused.requestId && r['outcome'] === 'ok'), 'no ok audit row for the failed mutation')
    assert.ok(faultRows.some((r) => r['request_id'] === retried.requestId && r['outcome'] === 'ok'), 'the retried mutation is audited ok')

  } catch (error) {
    failed = true
    console.error(error)
  } finally {
    await worker.dispose().catch(() => {})
  }
  if (!failed) {
    try {
      await sequencerRestart(keys.publicJwks, dir)
    } catch (error) {
      failed = true
      console.error(error)
    }
  }
  if (!failed) {
    try {
      await limitStoreOutage(keys.publicJwks, dir)
    } catch (error) {
      failed = true
      console.error(error)
    }
  }
  try {
    // ---- the chain, with the same code as npm run audit:verify
    const code = await auditVerify(['--persist-to', persist])
    if (code !== 0) {
      failed = true
      console.error(`audit chain did not verify (exit ${code})`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  console.log(`soak + faults: ${failed ? 'FAILED' : 'passed'} in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
  process.exit(failed ? 1 : 0)
}

/** Fault (c): the runtime holding the audit sequencers restarts mid-run. */
async function sequencerRestart(jwks: unknown, keyDir: string): Promise<void> {
  const CALLS_C = 1200
  const dir = mkdtempSync(join(tmpdir(), 'bastion-soak-seq-'))
  const persist = join(dir, 'state')
  seed(persist, dir)
  const [port] = (await freePorts(1)) as [number]
  const plain = (value: string) => ({ type: 'plain_text' as const, value })
  const start = () =>
    unstable_startWorker({
      config: join(ROOT, 'wrangler.toml'),
      bindings: { AUTH_ISSUER: plain(ISSUER), AUTH_AUDIENCE: plain(AUDIENCE), AUTH_JWKS: plain(JSON.stringify(jwks)), LOG_LEVEL: plain('error') },
      envFiles: [],
      sendMetrics: false,
      dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'error', persist, watch: false, liveReload: false },
    })
  const env: DevEnv = { dir: keyDir, isDefault: false, port, origin: '', issuer: ISSUER, audience: AUDIENCE, persistTo: persist }
  // Many users, so the limits refuse nothing and every answer is a served call.
  const auths = await Promise.all(Array.from({ length: 100 }, (_, i) => mintDevToken({ role: 'editor', sub: `seq-${i}`, ttlSeconds: 600, env }).then((t) => `Bearer ${t}`)))
  let worker = await start()
  try {
    await worker.ready
    const url = `http://127.0.0.1:${port}/mcp`
    const answered: string[] = []
    const reads = new Set<string>()
    let unanswered = 0
    let next = 0
    let restarting: Promise<void> | undefined
    const one = async () => {
      while (next < CALLS_C) {
        const k = next++
        if (answered.length >= CALLS_C / 2 && !restarting) {
          restarting = (async () => {
            await worker.dispose()
            worker = await start()
            await worker.ready
          })()
        }
        if (restarting) await restarting
        try {
          // mutations and reads alike: both rows are accepted by the sequencer before the answer
          const r = k % 2 === 0
            ? await post(url, auths[k % auths.length]!, 'create_ticket', { customerId: 'cus_007', subject: `restart ${k}`, body: 'written across a sequencer restart', priority: 'low' })
            : await post(url, auths[k % auths.length]!, 'get_customer', { customerId: 'cus_007' })
          if (r.status === 200 && r.requestId && !r.body.includes('"isError":true')) {
            answered.push(r.requestId)
            if (k % 2 === 1) reads.add(r.requestId)
          } else unanswered++
        } catch {
          unanswered++
        }
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, one))
    // Let the sequencers drain their outboxes (alarm or the next flush).
    const until = Date.now() + 60_000
    let missing = answered.length
    let missingReads = reads.size
    while (Date.now() < until) {
      const ids = new Set(d1(persist, 'SELECT request_id FROM audit_log').map((r) => String(r['request_id'])))
      missing = answered.filter((id) => !ids.has(id)).length
      missingReads = [...reads].filter((id) => !ids.has(id)).length
      if (missing === 0) break
      await new Promise((r) => setTimeout(r, 2000))
    }
    console.log(`fault (c): ${answered.length} calls served (${answered.length - reads.size} mutations, ${reads.size} reads; ${unanswered} cut off by the restart); ${missing} served calls without an audit row after the restart (${missingReads} of them reads)`)
    assert.equal(missing, 0, 'nothing the sequencer accepted is lost across a restart')
  } finally {
    await worker.dispose().catch(() => {})
  }
  const code = await auditVerify(['--persist-to', persist])
  rmSync(dir, { recursive: true, force: true })
  assert.equal(code, 0, 'the chains verify after the restart')
}

/** Fault (a): the Upstash endpoint goes away mid-run and comes back. */
async function limitStoreOutage(jwks: unknown, keyDir: string): Promise<void> {
  if (redisServerBinary() === undefined) {
    console.log('fault (a) limit store stopped: SKIPPED — redis-server is not installed (apt-get install -y redis-server)')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'bastion-soak-upstash-'))
  const persist = join(dir, 'state')
  seed(persist, dir)
  const redis = await startRedis()
  const token = `soak-${crypto.randomUUID()}`
  const [port, proxyPort] = (await freePorts(2)) as [number, number]
  let proxy = await startUpstashProxy({ redisPort: redis.port, token, port: proxyPort })
  const plain = (value: string) => ({ type: 'plain_text' as const, value })
  const worker = await unstable_startWorker({
    config: join(ROOT, 'wrangler.toml'),
    bindings: {
      AUTH_ISSUER: plain(ISSUER),
      AUTH_AUDIENCE: plain(AUDIENCE),
      AUTH_JWKS: plain(JSON.stringify(jwks)),
      LOG_LEVEL: plain('error'),
      UPSTASH_REDIS_REST_URL: plain(proxy.url),
      UPSTASH_REDIS_REST_TOKEN: plain(token),
    },
    envFiles: [],
    sendMetrics: false,
    dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'error', persist, watch: false, liveReload: false },
  })
  try {
    await worker.ready
    const url = `http://127.0.0.1:${port}/mcp`
    const env: DevEnv = { dir: keyDir, isDefault: false, port, origin: '', issuer: ISSUER, audience: AUDIENCE, persistTo: persist }
    // A fresh user per call: only the store can refuse, never a window.
    let n = 0
    const call = async () => {
      const auth = `Bearer ${await mintDevToken({ role: 'read-only', sub: `outage-${n++}`, ttlSeconds: 600, env })}`
      return post(url, auth, 'get_customer', { customerId: 'cus_007' })
    }
    const phase = async (count: number) => {
      const statuses = new Map<number, number>()
      let rounds = 0
      for (let i = 0; i < count; i += 10, rounds++) {
        const batch = await Promise.all(Array.from({ length: Math.min(10, count - i) }, call))
        for (const r of batch) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
      }
      return statuses
    }
    const show = (m: Map<number, number>) => [...m].map(([s, k]) => `${s}×${k}`).join(' ')
    const before = await phase(50)
    console.log(`fault (a): before the outage ${show(before)}`)
    assert.equal(before.get(200), 50, 'calls are served while the store is up')
    await proxy.stop()
    const during = await phase(50)
    console.log(`fault (a): limit store stopped ${show(during)}`)
    assert.equal(during.get(503), 50, 'every call during the outage answers 503 (fail closed)')
    proxy = await startUpstashProxy({ redisPort: redis.port, token, port: proxyPort })
    // The client may hold a broken connection for a moment: a bounded wait for the first success.
    const until = Date.now() + 20_000
    while (Date.now() < until && (await call()).status !== 200) await new Promise((r) => setTimeout(r, 250))
    const after = await phase(50)
    console.log(`fault (a): store back, same Worker ${show(after)}`)
    assert.equal(after.get(200), 50, 'calls are served again without a Worker restart')
  } finally {
    await worker.dispose().catch(() => {})
    await proxy.stop().catch(() => {})
    await redis.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
