// npm run test:reliability — 10 000 malformed requests (fast-check) against
// the real server (`npm run dev`, started as in the e2e tests: its own
// process group, free loopback ports, a fresh local D1), 16 at a time.
// Property: no request gets a 5xx, every answer is JSON-ish and carries an
// X-Request-Id, and afterwards the server still answers a well-formed call
// correctly. Not part of `npm test` (about 1–2 minutes).
//   FUZZ_RUNS (10000)  FUZZ_SEED (random; printed, so a failure can be replayed)
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { startDevServer } from '../e2e/support/server.ts'

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 10_000)
const SEED = Number(process.env['FUZZ_SEED'] ?? Math.floor(Math.random() * 2 ** 31))
const CONCURRENCY = 16

interface Case {
  method: string
  path: string
  headers: Record<string, string>
  body: string | undefined
}

function arbitraryCase(tokens: { valid: string; other: string }): fc.Arbitrary<Case> {
  const jsonValue = fc.jsonValue({ maxDepth: 4 })
  const rpcish = fc.record(
    {
      jsonrpc: fc.oneof(fc.constant('2.0'), fc.string(), jsonValue),
      id: fc.oneof(fc.integer(), fc.string(), fc.constant(null), jsonValue, fc.double()),
      method: fc.oneof(
        fc.constantFrom('tools/call', 'tools/list', 'initialize', 'ping', 'notifications/initialized', 'resources/list', 'server/discover', 'prompts/get'),
        fc.string(),
        jsonValue,
      ),
      params: fc.oneof(
        jsonValue,
        fc.record(
          {
            name: fc.oneof(fc.constantFrom('get_customer', 'execute_query', 'update_order', 'list_orders', 'search_products', 'create_ticket', 'nope'), fc.string(), jsonValue),
            arguments: fc.oneof(jsonValue, fc.dictionary(fc.constantFrom('customerId', 'query', 'orderId', 'status', 'limit', 'cursor', 'q', '__proto__', 'constructor'), jsonValue)),
            _meta: jsonValue,
          },
          { requiredKeys: [] },
        ),
      ),
    },
    { requiredKeys: [] },
  )
  const body = fc.oneof(
    { weight: 4, arbitrary: rpcish.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.array(rpcish, { maxLength: 4 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: jsonValue.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
    { weight: 1, arbitrary: rpcish.map((v) => JSON.stringify(v).slice(0, -1)) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  )
  // Mostly the right value, so most requests get past the transport checks
  // and reach authentication, the envelope parser, the SDK and the tools.
  const header = (good: string, others: fc.Arbitrary<string>) =>
    fc.oneof({ weight: 6, arbitrary: fc.constant<string | undefined>(good) }, { weight: 1, arbitrary: fc.constant(undefined) }, { weight: 2, arbitrary: others })
  return fc.record({
    method: fc.oneof({ weight: 8, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS') }),
    path: fc.oneof({ weight: 8, arbitrary: fc.constant('/mcp') }, { weight: 1, arbitrary: fc.constantFrom('/mcp/', '/MCP', '/mcp?x=1', '/.well-known/oauth-protected-resource/mcp', '/nope', '/%00') }),
    contentType: header('application/json', fc.oneof(fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x'), fc.string({ maxLength: 40 }))),
    accept: header('application/json, text/event-stream', fc.oneof(fc.constantFrom('application/json, text/event-stream', 'application/json', 'text/event-stream', '*/*'), fc.string({ maxLength: 40 }))),
    version: header('2025-11-25', fc.oneof(fc.constantFrom('2025-11-25', '2025-06-18', '2025-03-26', '2026-07-28', '2024-11-05'), fc.string({ maxLength: 20 }))),
    auth: fc.oneof(
      { weight: 5, arbitrary: fc.constant(`Bearer ${tokens.valid}`) },
      { weight: 1, arbitrary: fc.constant(`Bearer ${tokens.other}`) },
      { weight: 1, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map((s) => `Bearer ${s}`) },
      { weight: 1, arbitrary: fc.constant(`Bearer ${tokens.valid.slice(0, -3)}abc`) },
      { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
    ),
    origin: fc.oneof({ weight: 8, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('https://evil.example', 'null', 'http://127.0.0.1:6274') }),
    body,
  }).map(({ method, path, contentType, accept, version, auth, origin, body: b }) => {
    const headers: Record<string, string> = {}
    // Header values must be ByteStrings without CR/LF for fetch to send them.
    const put = (name: string, value: string | undefined) => {
      if (value !== undefined) headers[name] = value.replace(/[^\x20-\x7e]/g, '')
    }
    put('content-type', contentType)
    put('accept', accept)
    put('mcp-protocol-version', version)
    put('authorization', auth)
    put('origin', origin)
    return { method, path, headers, body: method === 'GET' ? undefined : b }
  })
}

async function main(): Promise<void> {
  const server = await startDevServer()
  const started = Date.now()
  try {
    const tokens = { valid: await server.token({ role: 'admin', sub: 'fuzz' }), other: await server.token({ role: 'read-only', sub: 'fuzz-ro' }) }
    const cases = fc.sample(arbitraryCase(tokens), { numRuns: RUNS, seed: SEED })
    const statuses = new Map<number, number>()
    const failures: { case: Case; status: number; body: string }[] = []
    let next = 0
    const worker = async () => {
      while (next < cases.length) {
        const c = cases[next++]!
        const init: RequestInit = { method: c.method, headers: c.headers }
        if (c.body !== undefined) init.body = c.body
        const response = await fetch(server.url + c.path, init)
        const text = await response.text()
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
        if (response.status >= 500 || !response.headers.get('x-request-id')) failures.push({ case: c, status: response.status, body: text.slice(0, 300) })
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    const summary = [...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ')
    console.log(`fuzz: ${cases.length} requests (seed ${SEED}) in ${((Date.now() - started) / 1000).toFixed(0)} s: ${summary}`)
    if (failures.length) console.error(JSON.stringify(failures.slice(0, 5), null, 2))
    assert.equal(failures.length, 0, `${failures.length} requests got a 5xx or no X-Request-Id (replay: FUZZ_SEED=${SEED})`)

    // Still serving, and serving correctly.
    const health = await fetch(`${server.url}/healthz`)
    assert.equal(health.status, 200)
    const call = await fetch(server.mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${tokens.valid}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: 'cus_007' } } }),
    })
    const result = (await call.json()) as { result?: { isError?: boolean; structuredContent?: { customer?: { id?: string } } } }
    assert.equal(call.status, 200)
    assert.equal(result.result?.isError ?? false, false)
    assert.equal(result.result?.structuredContent?.customer?.id, 'cus_007')
    console.log('fuzz: server answers a well-formed get_customer correctly afterwards')
  } finally {
    await server.stop()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
