// DPoP (RFC 9449) through the whole Worker in workerd, with the real
// DpopReplay Durable Object: cnf-bound tokens minted with the test keys,
// proofs built by the MCP SDK v2 client's own DpopSession (and by jose where a
// proof must be forged), the real SDK client over withDpop. AUTH_DPOP modes
// other than the default run the same Worker with one binding changed.
import { createExecutionContext, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { Client, DpopSession, StreamableHTTPClientTransport, withDpop } from '@modelcontextprotocol/client'
import { describe, expect, it } from 'vitest'
import worker from '../../src/index.ts'
import { DpopReplay } from '../../src/auth/dpop-replay.ts'
import { mintToken, type MintOptions } from '../support/tokens.ts'
import { callWorker, MCP_URL, rpcBody } from '../support/worker.ts'

const PRM_URL = 'https://bastion.test/.well-known/oauth-protected-resource/mcp'
const ALGS = 'ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA Ed25519'

async function boundToken(session: DpopSession, opts: MintOptions = {}): Promise<string> {
  return mintToken({ role: 'admin', ...opts, claims: { ...opts.claims, cnf: { jkt: session.thumbprint } } })
}

const LIST = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} })

function mcpRequest(authorization: string | undefined, proof?: string | string[], url = MCP_URL()): Request {
  const headers = new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' })
  if (authorization) headers.set('authorization', authorization)
  for (const p of typeof proof === 'string' ? [proof] : proof ?? []) headers.append('dpop', p)
  return new Request(url, { method: 'POST', headers, body: LIST })
}

/** The Worker with some bindings replaced (a fresh env object, so a fresh config). */
function workerWith(overrides: Record<string, unknown>) {
  const e = { ...env, ...overrides } as Env
  return (request: Request) => worker.fetch(request as Request<unknown, IncomingRequestCfProperties>, e, createExecutionContext())
}

async function listed(res: Response): Promise<number> {
  const body = (await rpcBody(res)) as { result?: { tools: unknown[] } }
  return body.result?.tools.length ?? -1
}

describe('DpopReplay object (the jti store)', () => {
  it('keeps exactly one of 20 concurrent checkAndStore calls with one jti', async () => {
    const stub = env.DPOP_REPLAY.get(env.DPOP_REPLAY.idFromName(`jkt-${crypto.randomUUID()}`))
    const exp = Math.floor(Date.now() / 1000) + 60
    const results = await Promise.all(Array.from({ length: 20 }, () => stub.checkAndStore('jti-1', exp)))
    expect(results.filter(Boolean)).toHaveLength(1)
    expect(await stub.checkAndStore('jti-2', exp)).toBe(true)
  })

  it('lets an expired record be taken over, and its alarm deletes expired records and then the whole storage', async () => {
    const stub = env.DPOP_REPLAY.get(env.DPOP_REPLAY.idFromName(`jkt-${crypto.randomUUID()}`))
    const later = Math.floor(Date.now() / 1000) + 3600
    expect(await stub.checkAndStore('old', later)).toBe(true)
    expect(await stub.checkAndStore('old', later)).toBe(false)
    // Let the record expire (time cannot be moved in the pool: its expiry is moved instead).
    await runInDurableObject(stub, async (_instance: DpopReplay, state) => {
      state.storage.sql.exec('UPDATE seen SET expires_at = ?1', Math.floor(Date.now() / 1000) - 1)
    })
    expect(await stub.checkAndStore('old', later)).toBe(true)
    await runInDurableObject(stub, async (_instance: DpopReplay, state) => {
      state.storage.sql.exec('UPDATE seen SET expires_at = ?1', Math.floor(Date.now() / 1000) - 1)
    })
    expect(await runDurableObjectAlarm(stub)).toBe(true)
    await runInDurableObject(stub, async (_instance: DpopReplay, state) => {
      expect(state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'seen'").toArray()).toEqual([])
      expect(await state.storage.getAlarm()).toBeNull()
    })
    // Still works after the wipe.
    expect(await stub.checkAndStore('new', later)).toBe(true)
    expect(await stub.checkAndStore('new', later)).toBe(false)
  })

  it('re-arms its alarm while unexpired records remain', async () => {
    const stub = env.DPOP_REPLAY.get(env.DPOP_REPLAY.idFromName(`jkt-${crypto.randomUUID()}`))
    const now = Math.floor(Date.now() / 1000)
    expect(await stub.checkAndStore('a', now + 3600)).toBe(true)
    expect(await stub.checkAndStore('b', now + 7200)).toBe(true)
    await runInDurableObject(stub, async (_instance: DpopReplay, state) => {
      state.storage.sql.exec("UPDATE seen SET expires_at = ?1 WHERE jti = 'a'", now - 1)
    })
    expect(await runDurableObjectAlarm(stub)).toBe(true)
    await runInDurableObject(stub, async (_instance: DpopReplay, state) => {
      expect(state.storage.sql.exec('SELECT jti FROM seen').toArray()).toEqual([{ jti: 'b' }])
      expect(await state.storage.getAlarm()).toBe((now + 7201) * 1000)
    })
  })
})

describe('AUTH_DPOP=allowed (default)', () => {
  it('accepts a DPoP-bound token with a valid proof', async () => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    const proof = await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })
    const res = await callWorker(mcpRequest(`DPoP ${token}`, proof))
    expect(res.status).toBe(200)
    expect(await listed(res)).toBe(7)
  })

  it('serves the real SDK client (withDpop over a DpopSession): connect, list, call', async () => {
    const session = await DpopSession.create({ alg: 'EdDSA' })
    const token = await boundToken(session, { role: 'editor' })
    const transport = new StreamableHTTPClientTransport(new URL(MCP_URL()), { fetch: withDpop(session, () => token)((input, init) => callWorker(input, init)) })
    const client = new Client({ name: 'dpop-tests', version: '1.0.0' })
    await client.connect(transport)
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('update_order')
    const r = await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_001' } })
    expect(r.isError).toBeFalsy()
    await client.close()
  })

  it('refuses a DPoP-bound token presented as Bearer (a stolen token without the key)', async () => {
    const token = await boundToken(await DpopSession.create())
    const res = await callWorker(mcpRequest(`Bearer ${token}`))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe(
      `DPoP error="invalid_token", error_description="invalid token", algs="${ALGS}", Bearer resource_metadata="${PRM_URL}", scope="customers:read orders:read"`,
    )
  })

  it('refuses a DPoP-bound token as Bearer even with a valid proof alongside', async () => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    const res = await callWorker(mcpRequest(`Bearer ${token}`, await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })))
    expect(res.status).toBe(401)
  })

  it('refuses a bound token with a proof made by another key (the thief signs with its own key)', async () => {
    const owner = await DpopSession.create()
    const thief = await DpopSession.create()
    const token = await boundToken(owner)
    const res = await callWorker(mcpRequest(`DPoP ${token}`, await thief.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof", error_description="invalid DPoP proof", algs="[^"]+", Bearer resource_metadata="/)
    const body = (await rpcBody(res)) as { error: { message: string; data: Record<string, unknown> } }
    expect(body.error.message).toBe('invalid DPoP proof')
    expect(Object.keys(body.error.data)).toEqual(['requestId'])
  })

  it('refuses a bound token without a proof, and with two proofs', async () => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    expect((await callWorker(mcpRequest(`DPoP ${token}`))).status).toBe(401)
    const proofs = [await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token }), await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })]
    const res = await callWorker(mcpRequest(`DPoP ${token}`, proofs))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_dpop_proof"')
  })

  it('refuses a proof for another URL (htu) or for another token (ath)', async () => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    const other = await boundToken(session, { sub: 'someone-else' })
    expect((await callWorker(mcpRequest(`DPoP ${token}`, await session.buildProof({ htm: 'POST', htu: 'https://bastion.test/other', accessToken: token })))).status).toBe(401)
    expect((await callWorker(mcpRequest(`DPoP ${token}`, await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: other })))).status).toBe(401)
  })

  it('refuses a replayed proof: the same proof is accepted once', async () => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    const proof = await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })
    expect((await callWorker(mcpRequest(`DPoP ${token}`, proof))).status).toBe(200)
    const again = await callWorker(mcpRequest(`DPoP ${token}`, proof))
    expect(again.status).toBe(401)
    expect(again.headers.get('www-authenticate')).toContain('error="invalid_dpop_proof"')
  })

  it('accepts exactly one of 20 concurrent presentations of one proof', async () => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    const proof = await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })
    const responses = await Promise.all(Array.from({ length: 20 }, () => callWorker(mcpRequest(`DPoP ${token}`, proof))))
    const statuses = responses.map((r) => r.status)
    await Promise.all(responses.map((r) => r.body?.cancel()))
    expect(statuses.filter((s) => s === 200)).toHaveLength(1)
    expect(statuses.filter((s) => s === 401)).toHaveLength(19)
  })

  it('refuses the DPoP scheme with a token that is not bound (no cnf.jkt)', async () => {
    const session = await DpopSession.create()
    const token = await mintToken({ role: 'admin' })
    const res = await callWorker(mcpRequest(`DPoP ${token}`, await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_token"/)
  })

  it('refuses a token bound by a confirmation method other than jkt (cnf without jkt)', async () => {
    const token = await mintToken({ role: 'admin', claims: { cnf: { 'x5t#S256': 'bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2' } } })
    expect((await callWorker(mcpRequest(`Bearer ${token}`))).status).toBe(401)
  })

  it('still accepts a plain bearer token, ignoring a DPoP header beside it', async () => {
    const session = await DpopSession.create()
    const token = await mintToken({ role: 'admin' })
    const res = await callWorker(mcpRequest(`Bearer ${token}`, await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })))
    expect(res.status).toBe(200)
  })

  it('advertises DPoP in the 401 challenge and in the PRM document', async () => {
    const res = await callWorker(mcpRequest(undefined))
    expect(res.headers.get('www-authenticate')).toMatch(new RegExp(`^Bearer resource_metadata=.*, DPoP algs="${ALGS}"$`))
    const prm = (await (await callWorker(PRM_URL)).json()) as Record<string, unknown>
    expect(prm['dpop_signing_alg_values_supported']).toEqual(ALGS.split(' '))
    expect(prm['dpop_bound_access_tokens_required']).toBeUndefined()
  })

  it('lets an allowed browser origin send DPoP and read DPoP-Nonce (CORS)', async () => {
    const pre = await callWorker(MCP_URL(), { method: 'OPTIONS', headers: { origin: 'https://allowed.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, dpop' } })
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-headers')!.split(', ')).toContain('dpop')
    const res = await callWorker(MCP_URL(), { method: 'POST', headers: { origin: 'https://allowed.example' } })
    expect(res.headers.get('access-control-expose-headers')!.split(', ')).toContain('dpop-nonce')
  })
})

describe('the replay store unreachable: fail closed', () => {
  // An unreachable or hung Durable Object cannot be produced for real in the
  // pool, so the namespace is replaced by one whose object fails or never answers.
  const failing = { idFromName: (n: string) => env.DPOP_REPLAY.idFromName(n), get: () => ({ checkAndStore: () => Promise.reject(new Error('object reset')) }) }
  const hanging = { idFromName: (n: string) => env.DPOP_REPLAY.idFromName(n), get: () => ({ checkAndStore: () => new Promise<boolean>(() => {}) }) }

  it.each([
    ['fails', failing],
    ['does not answer within the timeout', hanging],
  ])('answers 503 with Retry-After when the object %s, never an unchecked proof', async (_name, ns) => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    const res = await workerWith({ DPOP_REPLAY: ns })(mcpRequest(`DPoP ${token}`, await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })))
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    const body = (await rpcBody(res)) as { error: { message: string } }
    expect(body.error.message).not.toMatch(/object reset|timeout|ms/)
  })
})

describe('AUTH_DPOP=required', () => {
  const required = workerWith({ AUTH_DPOP: 'required' })

  it('refuses a plain bearer token with a DPoP invalid_token challenge', async () => {
    const res = await required(mcpRequest(`Bearer ${await mintToken({ role: 'admin' })}`))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_token", error_description="invalid token", algs="[^"]+", Bearer resource_metadata=/)
  })

  it('accepts a DPoP-bound token with a valid proof', async () => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    const res = await required(mcpRequest(`DPoP ${token}`, await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })))
    expect(res.status).toBe(200)
  })

  it('says dpop_bound_access_tokens_required in the PRM document', async () => {
    const prm = (await (await required(new Request(PRM_URL))).json()) as Record<string, unknown>
    expect(prm['dpop_bound_access_tokens_required']).toBe(true)
    expect(prm['dpop_signing_alg_values_supported']).toEqual(ALGS.split(' '))
  })
})

describe('AUTH_DPOP=off', () => {
  const off = workerWith({ AUTH_DPOP: 'off' })

  it('refuses the DPoP scheme, with a Bearer-only challenge', async () => {
    const session = await DpopSession.create()
    const token = await boundToken(session)
    const res = await off(mcpRequest(`DPoP ${token}`, await session.buildProof({ htm: 'POST', htu: MCP_URL(), accessToken: token })))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/)
    expect(res.headers.get('www-authenticate')).not.toContain('DPoP')
  })

  it('still refuses a DPoP-bound token as Bearer (the binding is never ignored)', async () => {
    const res = await off(mcpRequest(`Bearer ${await boundToken(await DpopSession.create())}`))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).not.toContain('DPoP')
  })

  it('accepts plain bearer tokens and advertises no DPoP', async () => {
    expect((await off(mcpRequest(`Bearer ${await mintToken({ role: 'admin' })}`))).status).toBe(200)
    expect((await off(mcpRequest(undefined))).headers.get('www-authenticate')).not.toContain('DPoP')
    const prm = (await (await off(new Request(PRM_URL))).json()) as Record<string, unknown>
    expect(prm).not.toHaveProperty('dpop_signing_alg_values_supported')
  })
})

describe('a bad AUTH_DPOP value', () => {
  it('fails every request with 500 naming no internals', async () => {
    const res = await workerWith({ AUTH_DPOP: 'sometimes' })(mcpRequest(undefined))
    expect(res.status).toBe(500)
  })
})
