// End-to-end latency of one MCP call through the whole pipeline, over real
// HTTP on loopback: `npm run dev` (wrangler dev, local D1) started the way
// the e2e tests start it, then sequential requests, one at a time.
//   401            — refused at authentication (no D1 at all)
//   tools/list     — authenticated, not audited
//   get_customer   — a read; its audit row is appended after the response
//   update_order   — a mutation; the change and its audit row in one batch
//   execute_query  — parse + guard + capped query
//   cancel, confirmed — update_order paid → cancelled, which the user confirms
//                    (README "Confirmation"), the client answering at once:
//                    2026-07-28: two requests (input_required, then the
//                    retry with the answer and the request state);
//                    2025-11-25: the call's SSE stream with the question, the
//                    answer POST through the rendezvous object, the result
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
      console.log(`http ${name.padEnd(46)} median ${median.toFixed(2).padStart(7)} ms  p95 ${p95.toFixed(2).padStart(7)} ms`)
    }

    // The orders the first update_order case paid: half are cancelled per era.
    const paid = pending.slice(0, Math.min(N, pending.length))
    const half = Math.floor(paid.length / 2)
    const headers = (token: string, extra: Record<string, string> = {}) => ({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`, ...extra })
    const modern = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'update_order' }
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } }
    const yes = { confirm: { action: 'accept', content: { confirm: true } } }
    // subjects of their own: the earlier cases spent the first tokens' rate windows
    const editors = await Promise.all(Array.from({ length: 12 }, (_, i) => server.token({ role: 'editor', sub: `bench-confirm-${i}` })))
    const editorFor = (i: number) => editors[Math.floor(i / 10) % editors.length]!
    const cancelModern = async (i: number) => {
      const token = editorFor(i)
      const params = { name: 'update_order', arguments: { orderId: paid[i]!, status: 'cancelled' }, _meta: meta }
      const first = (await (await fetch(server.mcpUrl, { method: 'POST', headers: headers(token, modern), body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params }) })).json()) as { result: { requestState: string } }
      const done = (await (await fetch(server.mcpUrl, { method: 'POST', headers: headers(token, modern), body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { ...params, requestState: first.result.requestState, inputResponses: yes } }) })).json()) as { result: { isError?: boolean } }
      if (done.result?.isError !== undefined) throw new Error(`cancel (2026-07-28) of ${paid[i]}: ${JSON.stringify(done)}`)
    }
    const legacy = { 'mcp-protocol-version': '2025-11-25' }
    const sessions = new Map<string, string>()
    const cancelLegacy = async (i: number) => {
      const token = editorFor(half + i)
      let session = sessions.get(token)
      if (session === undefined) {
        const init = await fetch(server.mcpUrl, { method: 'POST', headers: headers(token, legacy), body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: { elicitation: {} }, clientInfo: { name: 'bench', version: '1' } } }) })
        await init.text()
        sessions.set(token, (session = init.headers.get('mcp-session-id')!))
      }
      const h = headers(token, { ...legacy, 'mcp-session-id': session })
      const t = performance.now()
      const res = await fetch(server.mcpUrl, { method: 'POST', headers: h, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'update_order', arguments: { orderId: paid[half + i]!, status: 'cancelled' } } }) })
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
      let buffer = ''
      let answered = false
      for (;;) {
        const { value, done } = await reader.read()
        if (done) throw new Error(`cancel (2025-11-25) of ${paid[half + i]}: the stream ended without a result`)
        buffer += value
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const data = buffer.slice(0, end).split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('')
          buffer = buffer.slice(end + 2)
          if (!data) continue
          const message = JSON.parse(data) as { id: string | number; method?: string; result?: { isError?: boolean } }
          if (message.method === 'elicitation/create' && !answered) {
            answered = true
            await (await fetch(server.mcpUrl, { method: 'POST', headers: h, body: JSON.stringify({ jsonrpc: '2.0', id: message.id, result: yes.confirm }) })).text()
          } else if (message.id === 1) {
            if (message.result?.isError) throw new Error(`cancel (2025-11-25): ${JSON.stringify(message)}`)
            await reader.cancel()
            return performance.now() - t
          }
        }
      }
    }
    for (const [name, n, runOne] of [
      ['cancel, confirmed (2026-07-28, 2 requests)', half, async (i: number) => { const t = performance.now(); await cancelModern(i); return performance.now() - t }],
      ['cancel, confirmed (2025-11-25, SSE + answer)', paid.length - half, cancelLegacy],
    ] as const) {
      const samples: number[] = []
      for (let i = 0; i < n; i++) samples.push(await runOne(i))
      const { median, p95 } = stats(samples)
      console.log(`http ${name.padEnd(46)} median ${median.toFixed(2).padStart(7)} ms  p95 ${p95.toFixed(2).padStart(7)} ms  (n=${n})`)
    }
  } finally {
    await server.stop()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
