// The token proxy used by conformance.test.ts, against a loopback echo
// server: it must add the token, stream both ways, keep status and headers,
// and translate only its own address — never a foreign Host or Origin, which
// would hide a DNS-rebinding probe from the server.
import { createServer, request, type Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { startTokenProxy, type TokenProxy } from './support/token-proxy.ts'

const Echo = z.object({ method: z.string(), url: z.string(), headers: z.record(z.string(), z.string()), body: z.string() })

let upstream: Server
let upstreamUrl: string
let proxy: TokenProxy

beforeAll(async () => {
  upstream = createServer((req, res) => {
    if (req.url === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: first\n\n')
      // The second event comes 300 ms later: the first must arrive before it.
      setTimeout(() => res.end('data: second\n\n'), 300)
      return
    }
    let body = ''
    req.on('data', (chunk: Buffer) => (body += chunk.toString()))
    req.on('end', () => {
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]))
      res.writeHead(req.url === '/teapot' ? 418 : 200, { 'content-type': 'application/json', 'x-upstream': 'yes', 'www-authenticate': 'Bearer realm="echo"' })
      res.end(JSON.stringify({ method: req.method, url: req.url, headers, body }))
    })
  })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  const address = upstream.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  upstreamUrl = `http://127.0.0.1:${address.port}`
  proxy = await startTokenProxy({ target: upstreamUrl, token: 'tok-123' })
})

afterAll(async () => {
  await proxy?.close()
  upstream?.closeAllConnections()
  await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()))
})

async function echo(path: string, init: RequestInit = {}) {
  const response = await fetch(`${proxy.url}${path}`, init)
  return { response, seen: Echo.parse(await response.json()) }
}

function rawGet(path: string, headers: Record<string, string>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(`${proxy.url}${path}`, { headers }, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => (body += chunk.toString()))
      res.on('end', () => resolve(JSON.parse(body)))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('token proxy', () => {
  it('adds the Bearer token and forwards method, path, query and body', async () => {
    const { seen } = await echo('/mcp?x=1', { method: 'POST', body: '{"jsonrpc":"2.0"}', headers: { 'content-type': 'application/json' } })
    expect(seen).toMatchObject({ method: 'POST', url: '/mcp?x=1', body: '{"jsonrpc":"2.0"}' })
    expect(seen.headers['authorization']).toBe('Bearer tok-123')
    expect(seen.headers['content-type']).toBe('application/json')
  })

  it('keeps an Authorization header the client sent itself', async () => {
    const { seen } = await echo('/', { headers: { authorization: 'Bearer mine' } })
    expect(seen.headers['authorization']).toBe('Bearer mine')
  })

  it('preserves the upstream status and headers', async () => {
    const { response } = await echo('/teapot')
    expect(response.status).toBe(418)
    expect(response.headers.get('x-upstream')).toBe('yes')
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="echo"')
  })

  it('presents its own Host and Origin as the server’s, and passes foreign ones through untouched', async () => {
    const own = await echo('/', { headers: { origin: proxy.url } })
    expect(own.seen.headers['host']).toBe(new URL(upstreamUrl).host)
    expect(own.seen.headers['origin']).toBe(upstreamUrl)

    // fetch() cannot set Host; node:http can (as the conformance suite's undici client does).
    const foreign = Echo.parse(await rawGet('/', { host: 'evil.example.com', origin: 'http://evil.example.com' }))
    expect(foreign.headers['host']).toBe('evil.example.com')
    expect(foreign.headers['origin']).toBe('http://evil.example.com')
  })

  it('streams a response (SSE events arrive before the response ends)', async () => {
    const response = await fetch(`${proxy.url}/sse`)
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    const reader = response.body!.getReader()
    const started = Date.now()
    const first = await reader.read()
    expect(new TextDecoder().decode(first.value)).toBe('data: first\n\n')
    expect(Date.now() - started).toBeLessThan(250)
    let rest = ''
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += new TextDecoder().decode(chunk.value)
    expect(rest).toBe('data: second\n\n')
  })

  it('answers 502 when the server is unreachable', async () => {
    const dead = await startTokenProxy({ target: 'http://127.0.0.1:9', token: 't' })
    try {
      const response = await fetch(`${dead.url}/mcp`)
      expect(response.status).toBe(502)
    } finally {
      await dead.close()
    }
  })
})
