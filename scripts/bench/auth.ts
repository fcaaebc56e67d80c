// What checking an access token costs, per way of checking it (README
// "Connect your identity provider"):
//   1. the verifier alone (src/auth/verify.ts, Node, in process), per token:
//      a JWT verified against a local key set (ES256, RS256; the token reused,
//      as an agent does) — the baseline; an opaque token answered from the
//      introspection cache (the same token every time after the first call;
//      the stand-in counts its requests to prove they are hits); and an
//      opaque token seen for the first time (a distinct token per call) POSTed
//      to a loopback introspection stand-in (node:http) — that row is mostly
//      the round trip, and says so;
//   2. the whole Worker (unstable_startWorker, inspector off, local D1):
//      tools/list with a JWT against the same with a cached opaque token, and
//      with a new opaque token per call; sequential (median, p95) and 10 in
//      flight (req/s). Every case is its own `sub` per batch, so the
//      tools/list rate limit (600/min) is never met.
// Speed is measured here, never in timed tests.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import { unstable_startWorker } from 'wrangler'
import { createTokenVerifier } from '../../src/auth/verify.ts'
import { ROOT } from '../lib/dev-env.ts'
import { freePorts } from '../../test/e2e/support/server.ts'

const N = Number(process.env['BENCH_AUTH_ITERATIONS'] ?? 2000)
const WORKER_N = Number(process.env['BENCH_AUTH_WORKER_ITERATIONS'] ?? 200)
const MAPPING = { scopeClaims: [['scope']], roleClaims: [['role']], roleMap: undefined, preset: 'native' as const }

function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)]!, p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]! }
}

/** An RFC 7662 stand-in: every token is active for `aud`, with the sub the token names after its last `.`-free dash. */
async function introspectionStandIn(issuer: string, audience: string): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let requests = 0
  const server: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => {
      requests++
      const token = new URLSearchParams(body).get('token') ?? ''
      const now = Math.floor(Date.now() / 1000)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ active: true, iss: issuer, aud: audience, sub: token.split('-').slice(0, 3).join('-'), exp: now + 3600, iat: now, scope: 'customers:read orders:read', role: 'read-only', client_id: 'bench', token_type: 'Bearer' }))
    })
  })
  const [port] = (await freePorts(1)) as [number]
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${port}/introspect`, requests: () => requests, close: () => new Promise((resolve) => server.close(() => resolve())) }
}

async function keyPair(alg: 'ES256' | 'RS256'): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg)
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: `bench-${alg}`, alg, use: 'sig' } }
}

async function verifierAlone(): Promise<void> {
  const issuer = 'https://issuer.bench'
  const audience = 'https://bastion.bench/mcp'
  const standIn = await introspectionStandIn(issuer, audience)
  try {
    const es = await keyPair('ES256')
    const rs = await keyPair('RS256')
    const introspection = { url: new URL(standIn.url), clientId: 'bench', clientSecret: 'bench-secret', cacheSeconds: 3600, timeoutMs: 3000, ratePerSecond: 1000 }
    const verify = createTokenVerifier({ issuer, audiences: [audience], algorithms: ['ES256', 'RS256'], jwks: { kind: 'local', document: { keys: [es.jwk, rs.jwk] as { kty: string }[] } }, mapping: MAPPING, introspection })
    const time = async (label: string, tokenFor: (i: number) => string, n: number) => {
      for (let i = 0; i < 50; i++) await verify(tokenFor(-1 - i))
      const samples: number[] = []
      for (let i = 0; i < n; i++) {
        const token = tokenFor(i)
        const t = performance.now()
        const r = await verify(token)
        samples.push((performance.now() - t) * 1000)
        if (!r.ok) throw new Error(`${label}: ${r.code} ${r.detail}`)
      }
      return stats(samples)
    }
    const jwt = async ({ privateKey, jwk }: { privateKey: CryptoKey; jwk: JWK }) =>
      new SignJWT({ scope: 'customers:read orders:read', role: 'read-only', jti: 'bench-jwt' })
        .setProtectedHeader({ alg: jwk.alg!, kid: jwk.kid!, typ: 'at+jwt' }).setIssuer(issuer).setAudience(audience).setSubject('bench-agent').setIssuedAt().setExpirationTime('1h').sign(privateKey)
    const esToken = await jwt(es)
    const rsToken = await jwt(rs)
    const esStats = await time('jwt ES256', () => esToken, N)
    const rsStats = await time('jwt RS256', () => rsToken, N)
    const before = standIn.requests()
    const cached = await time('introspection cached', () => 'bench-agent-cached-0123456789abcdef', N)
    const cachedRequests = standIn.requests() - before
    const uncachedN = Math.min(N, 500)
    const uncached = await time('introspection uncached', (i) => `bench-agent-new-${i}-${Math.random().toString(36).slice(2)}`, uncachedN)
    const line = (label: string, s: { median: number; p95: number }, note: string) =>
      console.log(`auth verify ${label.padEnd(24)} median ${s.median.toFixed(1).padStart(7)} µs  p95 ${s.p95.toFixed(1).padStart(7)} µs  ${note}`)
    line('jwt ES256', esStats, `(n=${N}, the baseline)`)
    line('jwt RS256', rsStats, `(n=${N}; ×${(rsStats.median / esStats.median).toFixed(2)} of ES256)`)
    line('introspection cached', cached, `(n=${N}; ×${(cached.median / esStats.median).toFixed(2)} of jwt ES256, ×${(cached.median / rsStats.median).toFixed(2)} of RS256; ${cachedRequests} introspection request for all of them)`)
    line('introspection uncached', uncached, `(n=${uncachedN}, a new token each: one POST to a loopback stand-in, ×${(uncached.median / esStats.median).toFixed(1)} of jwt ES256; against a real IdP add its latency)`)
  } finally {
    await standIn.close()
  }
}

async function throughWorker(): Promise<void> {
  const [port] = (await freePorts(1)) as [number]
  const origin = `http://127.0.0.1:${port}`
  const mcpUrl = `${origin}/mcp`
  const es = await keyPair('ES256')
  const standIn = await introspectionStandIn(origin, mcpUrl)
  const dir = mkdtempSync(join(tmpdir(), 'bastion-bench-auth-'))
  const bindings = {
    AUTH_ISSUER: origin,
    AUTH_AUDIENCE: mcpUrl,
    AUTH_JWKS: JSON.stringify({ keys: [es.jwk] }),
    AUTH_INTROSPECTION_URL: standIn.url,
    AUTH_INTROSPECTION_CLIENT_ID: 'bench',
    AUTH_INTROSPECTION_CLIENT_SECRET: 'bench-secret',
    AUTH_INTROSPECTION_CACHE_SECONDS: '3600',
    AUTH_INTROSPECTION_RATE: '1000',
  }
  const worker = await unstable_startWorker({
    config: join(ROOT, 'wrangler.toml'),
    bindings: Object.fromEntries(Object.entries(bindings).map(([k, v]) => [k, { type: 'plain_text' as const, value: v }])),
    envFiles: [],
    sendMetrics: false,
    dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'warn', persist: dir, watch: false, liveReload: false },
  })
  try {
    await worker.ready
    let id = 1
    const post = (token: string) =>
      fetch(mcpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}` },
        body: JSON.stringify({ jsonrpc: '2.0', id: id++, method: 'tools/list', params: {} }),
      }).then(async (r) => {
        await r.text()
        if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.headers.get('www-authenticate')}`)
      })
    let batch = 0
    const jwt = (sub: string) => new SignJWT({ role: 'read-only' }).setSubject(sub).setProtectedHeader({ alg: 'ES256', kid: es.jwk.kid!, typ: 'at+jwt' }).setIssuer(origin).setAudience(mcpUrl).setIssuedAt().setExpirationTime('1h').sign(es.privateKey)
    // Each batch is one sub (tokens of one sub, or opaque tokens whose sub the stand-in derives from the prefix).
    const cases: [string, (count: number) => Promise<(i: number) => string>][] = [
      ['JWT (ES256)', async () => {
        const token = await jwt(`bench-jwt-${batch++}`)
        return () => token
      }],
      ['opaque, cached', async () => {
        const token = `bench-opq-${batch++}-cached`
        await post(token)
        return () => token
      }],
      ['opaque, new token per call', async () => {
        const prefix = `bench-new-${batch++}`
        return (i) => `${prefix}-${i}-${Math.random().toString(36).slice(2)}`
      }],
    ]
    const total = Math.min(500, WORKER_N * 2)
    console.log(`auth worker (unstable_startWorker, inspector off, tools/list, sequential n=${WORKER_N}, then 10 in flight × ${total})`)
    const results = new Map<string, { median: number; rps: number }>()
    for (const [name, prepare] of cases) {
      const warm = await prepare(20)
      for (let i = 0; i < 20; i++) await post(warm(i))
      const run = await prepare(WORKER_N)
      const samples: number[] = []
      for (let i = 0; i < WORKER_N; i++) {
        const token = run(i)
        const t = performance.now()
        await post(token)
        samples.push(performance.now() - t)
      }
      const { median, p95 } = stats(samples)
      const parallel = await prepare(total)
      const tokens = Array.from({ length: total }, (_, i) => parallel(i))
      let next = 0
      const t = performance.now()
      await Promise.all(Array.from({ length: 10 }, async () => {
        while (next < total) await post(tokens[next++]!)
      }))
      const rps = total / ((performance.now() - t) / 1000)
      results.set(name, { median, rps })
      const base = results.get('JWT (ES256)')!
      console.log(`auth worker ${name.padEnd(28)} median ${median.toFixed(2).padStart(6)} ms  p95 ${p95.toFixed(2).padStart(6)} ms  10 in flight ${rps.toFixed(0).padStart(5)} req/s  (×${(rps / base.rps).toFixed(2)} of JWT req/s)`)
    }
  } finally {
    await worker.dispose()
    await standIn.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function main() {
  await verifierAlone()
  await throughWorker()
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
