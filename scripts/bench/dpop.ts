// What DPoP costs (README "DPoP"):
//   1. the proof verifier alone (src/auth/dpop.ts, Node, in-memory replay
//      store), per proof, for the common key types;
//   2. the whole Worker (unstable_startWorker, inspector off, local D1):
//      tools/list with a Bearer token against the same with a DPoP-bound token
//      and a fresh proof (verification + one DpopReplay RPC with a SQLite
//      write), sequential (median, p95) and 10 in flight (req/s). Proofs are
//      made before the clock starts, so client signing is not measured.
// Speed is measured here, never in timed tests.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { unstable_startWorker } from 'wrangler'
import { DpopSession } from '@modelcontextprotocol/client'
import { accessTokenHash, createDpopVerifier, type ReplayStore } from '../../src/auth/dpop.ts'
import { ROOT } from '../lib/dev-env.ts'
import { freePorts } from '../../test/e2e/support/server.ts'

const N = Number(process.env['BENCH_DPOP_ITERATIONS'] ?? 300)

function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)]!, p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]! }
}

async function verifierAlone(): Promise<void> {
  const url = 'https://bastion.test/mcp'
  const token = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln'
  const memory = new Map<string, number>()
  const replay: ReplayStore = { checkAndStore: async (jkt, jti, exp) => (memory.has(`${jkt}:${jti}`) ? false : (memory.set(`${jkt}:${jti}`, exp), true)) }
  const verify = createDpopVerifier({ replay })
  const n = N * 4
  for (const alg of ['ES256', 'EdDSA', 'RS256']) {
    const { privateKey, publicKey } = await generateKeyPair(alg)
    const jwk = await exportJWK(publicKey)
    const jkt = await calculateJwkThumbprint(jwk, 'sha256')
    const ath = await accessTokenHash(token)
    const now = Math.floor(Date.now() / 1000)
    const proofs = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        new SignJWT({ jti: `${alg}-${i}`, htm: 'POST', htu: url, iat: now, ath }).setProtectedHeader({ alg, typ: 'dpop+jwt', jwk }).sign(privateKey as CryptoKey),
      ),
    )
    const t = performance.now()
    for (const proof of proofs) {
      const r = await verify({ proof, method: 'POST', url, accessToken: token, jkt })
      if (!r.ok) throw new Error(`${alg}: ${r.code} ${r.detail}`)
    }
    const us = ((performance.now() - t) * 1000) / n
    console.log(`verifier ${alg.padEnd(6)} ${us.toFixed(0).padStart(6)} µs per proof (n=${n}, Node ${process.version})`)
  }
}

async function throughWorker(): Promise<void> {
  const [port] = (await freePorts(1)) as [number]
  const origin = `http://127.0.0.1:${port}`
  const mcpUrl = `${origin}/mcp`
  const { privateKey, publicKey } = await generateKeyPair('ES256')
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256', use: 'sig' }] })
  const mint = async (claims: Record<string, unknown>) =>
    new SignJWT({ role: 'read-only', ...claims })
      .setSubject(String(claims['sub']))
      .setProtectedHeader({ alg: 'ES256', kid: 'bench', typ: 'at+jwt' })
      .setIssuer(origin)
      .setAudience(mcpUrl)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey)
  const dir = mkdtempSync(join(tmpdir(), 'bastion-bench-dpop-'))
  const worker = await unstable_startWorker({
    config: join(ROOT, 'wrangler.toml'),
    bindings: Object.fromEntries(Object.entries({ AUTH_ISSUER: origin, AUTH_AUDIENCE: mcpUrl, AUTH_JWKS: jwks }).map(([k, v]) => [k, { type: 'plain_text' as const, value: v }])),
    envFiles: [],
    sendMetrics: false,
    dev: { inspector: false, server: { hostname: '127.0.0.1', port }, logLevel: 'warn', persist: dir, watch: false, liveReload: false },
  })
  try {
    await worker.ready
    const session = await DpopSession.create()
    let id = 1
    const post = (headers: Record<string, string>) =>
      fetch(mcpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', ...headers },
        body: JSON.stringify({ jsonrpc: '2.0', id: id++, method: 'tools/list', params: {} }),
      }).then(async (r) => {
        await r.text()
        if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.headers.get('www-authenticate')}`)
      })
    // Each phase is its own `sub`, so no phase meets the 600/min limit for tools/list.
    let phase = 0
    const cases: [string, (count: number) => Promise<(i: number) => Promise<void>>][] = [
      ['Bearer', async () => {
        const bearer = await mint({ sub: `bench-bearer-${phase++}` })
        return () => post({ authorization: `Bearer ${bearer}` })
      }],
      ['DPoP (proof + replay object)', async (count) => {
        const bound = await mint({ sub: `bench-dpop-${phase++}`, cnf: { jkt: session.thumbprint } })
        const ps = await Promise.all(Array.from({ length: count }, () => session.buildProof({ htm: 'POST', htu: mcpUrl, accessToken: bound })))
        return (i) => post({ authorization: `DPoP ${bound}`, dpop: ps[i]! })
      }],
    ]
    const total = Math.min(500, N * 2)
    console.log(`worker (unstable_startWorker, inspector off, tools/list, sequential n=${N}, then 10 in flight × ${total})`)
    for (const [name, prepare] of cases) {
      const run = await prepare(N + 20)
      for (let i = 0; i < 20; i++) await run(i)
      const samples: number[] = []
      for (let i = 20; i < N + 20; i++) {
        const t = performance.now()
        await run(i)
        samples.push(performance.now() - t)
      }
      const { median, p95 } = stats(samples)
      const parallel = await prepare(total)
      let next = 0
      const t = performance.now()
      await Promise.all(Array.from({ length: 10 }, async () => {
        while (next < total) await parallel(next++)
      }))
      const rps = total / ((performance.now() - t) / 1000)
      console.log(`worker ${name.padEnd(30)} median ${median.toFixed(2).padStart(6)} ms  p95 ${p95.toFixed(2).padStart(6)} ms  10 in flight ${rps.toFixed(0).padStart(5)} req/s`)
    }
  } finally {
    await worker.dispose()
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
