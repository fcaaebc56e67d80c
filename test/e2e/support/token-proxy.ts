// A loopback HTTP proxy that adds `Authorization: Bearer <token>` to every
// request it forwards, for tools that cannot send headers of their own (the
// conformance suite). Request and response bodies are streamed both ways;
// status, headers and SSE pass through unchanged.
//
// The proxy stands in for the server at another address, so it translates its
// own address to the server's, as a reverse proxy does: a `Host` naming the
// proxy becomes the server's host, and an `Origin` that is the proxy's own
// origin becomes the server's origin (a same-origin request to the proxy is a
// same-origin request to the server). Any other Host or Origin — e.g. a DNS
// rebinding probe from evil.example.com — reaches the server untouched, for
// the server to judge.
import { createServer, request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'

export interface TokenProxy {
  /** http://127.0.0.1:<port> */
  url: string
  port: number
  close(): Promise<void>
}

export interface TokenProxyOptions {
  /** Where to forward, e.g. http://127.0.0.1:8787 (path and query are kept from each request). */
  target: string
  token: string
}

function loopbackHosts(port: number): Set<string> {
  return new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`])
}

export async function startTokenProxy({ target, token }: TokenProxyOptions): Promise<TokenProxy> {
  const upstream = new URL(target)
  if (upstream.protocol !== 'http:') throw new Error(`token proxy: only http targets are supported, got ${target}`)
  let own = new Set<string>()

  const forwardHeaders = (incoming: IncomingHttpHeaders): OutgoingHttpHeaders => {
    const headers: OutgoingHttpHeaders = { ...incoming }
    const host = incoming.host?.toLowerCase()
    if (host === undefined || own.has(host)) headers['host'] = upstream.host
    const origin = incoming.origin
    if (origin !== undefined) {
      try {
        const parsed = new URL(origin)
        if (parsed.protocol === 'http:' && own.has(parsed.host)) headers['origin'] = upstream.origin
      } catch {
        // not a URL: forward as sent
      }
    }
    if (incoming.authorization === undefined) headers['authorization'] = `Bearer ${token}`
    return headers
  }

  const server = createServer((req, res) => {
    const upstreamReq = httpRequest(
      {
        hostname: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: forwardHeaders(req.headers),
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, upstreamRes.headers)
        res.flushHeaders()
        upstreamRes.pipe(res)
        upstreamRes.on('error', () => res.destroy())
      },
    )
    upstreamReq.on('error', (error) => {
      if (res.headersSent) {
        res.destroy()
        return
      }
      res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(`token proxy: upstream ${target} failed: ${error.message}`)
    })
    req.on('error', () => upstreamReq.destroy())
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy()
    })
    req.pipe(upstreamReq)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('token proxy: could not read its port')
  own = loopbackHosts(address.port)

  return {
    url: `http://127.0.0.1:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
