// End-to-end latency of one MCP call through the whole pipeline, over real
// HTTP on loopback: `npm run dev` (wrangler dev, local D1) started the way
// the e2e tests start it, then sequential requests, one at a time.
//   401            — refused at authentication (no D1 at all)
//   tools/list     — authenticated, not audited
//   get_customer   — a read; its audit row is appended after the response
//   update_order   — a mutation; the change and its audit row in one batch
//   execute_query  — parse + guard + capped query
// Prints median and p95 in ms. Local D1 is miniflare on disk: compare the
// rows with each other, not with production.
import { startDevServer } from '../../test/e2e/support/server.ts'

const N = Number(process.env['BENCH_HTTP_ITERATIONS'] ?? 150)

function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)]!, p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]! }
}

async function main() {
  const server = await startDevServer()
  try {
    // A fresh sub every 40 calls: the limits (60 tools/call per minute per sub) are not what this measures.
    const tokens = await Promise.all(Array.from({ length: 30 }, (_, i) => server.token({ role: 'admin', sub: `bench-http-${i}` })))
    let id = 1
    const tokenFor = (n: number) => tokens[Math.floor(n / 40) % tokens.length]!
    const post = (body: Record<string, unknown> | undefined, auth = true) =>
      fetch(server.mcpUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2025-11-25',
          ...(auth ? { authorization: `Bearer ${tokenFor(id)}` } : {}),
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: id++, ...body }),
      }).then(async (r) => {
        await r.text()
        return r.status
      })
    const call = (name: string, args: Record<string, unknown>) => post({ method: 'tools/call', params: { name, arguments: args } })
    const cases: [string, (i: number) => Promise<number>][] = [
      ['401 (no token)', () => post({ method: 'tools/list' }, false)],
      ['tools/list', () => post({ method: 'tools/list' })],
      ['get_customer (audit in waitUntil)', (i) => call('get_customer', { customerId: `cus_${String((i % 60) + 1).padStart(3, '0')}` })],
      // every call moves a fresh pending order: a real write each time (pending → paid; a
      // cancellation asks the user first, README "Confirmation")
      ['update_order (audit in the batch)', (i) => call('update_order', { orderId: pending[i % pending.length]!, status: 'paid' })],
      ['execute_query (guard + capped query)', () => call('execute_query', { query: 'SELECT status, count(*) AS n, sum(total_cents) AS cents FROM orders GROUP BY status' })],
    ]
    // pending orders to move, read through the server itself
    const listed = await fetch(server.mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${tokens[0]!}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'tools/call', params: { name: 'execute_query', arguments: { query: "SELECT id FROM orders WHERE status = 'pending' ORDER BY id" } } }),
    }).then((r) => r.json() as Promise<{ result: { structuredContent: { rows: { id: string }[] } } }>)
    const pending = listed.result.structuredContent.rows.map((r) => r.id)

    console.log(`http (wrangler dev, local D1, sequential, n=${N}; update_order n=${Math.min(N, pending.length)})`)
    for (const [name, run] of cases) {
      const n = name.startsWith('update_order') ? Math.min(N, pending.length) : N
      for (let i = 0; i < 10 && !name.startsWith('update_order'); i++) await run(i)
      const samples: number[] = []
      for (let i = 0; i < n; i++) {
        const t = performance.now()
        const status = await run(i)
        samples.push(performance.now() - t)
        if (status !== (name.startsWith('401') ? 401 : 200)) throw new Error(`${name}: HTTP ${status}`)
      }
      const { median, p95 } = stats(samples)
      console.log(`http ${name.padEnd(38)} median ${median.toFixed(2).padStart(7)} ms  p95 ${p95.toFixed(2).padStart(7)} ms`)
    }
  } finally {
    await server.stop()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
