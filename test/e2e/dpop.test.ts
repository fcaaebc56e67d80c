// DPoP end to end (RFC 9449): the real authorization server (oidc-provider,
// DPoP on, support/auth-server.ts) issues a DPoP-bound token (cnf.jkt) to the
// SDK v2 client's ClientCredentialsProvider with a DpopSession; the real
// server (`npm run dev`) verifies every proof. What a thief could capture on
// the way — the token, or a whole request with its proof — is replayed and
// refused. A second server runs with AUTH_DPOP=required and refuses a plain
// bearer client.
import {
  Client,
  ClientCredentialsProvider,
  DpopSession,
  StreamableHTTPClientTransport,
  type FetchLike,
} from '@modelcontextprotocol/client'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { startAuthServer, type AuthServer } from './support/auth-server.ts'
import { Customer, DpopClientCredentialsProvider, NEWEST_REVISION, structured, toolNames } from './support/mcp.ts'
import { startDevServer, type DevServer } from './support/server.ts'

const CLIENT_INFO = { name: 'bastion-dpop-e2e', version: '1.0.0' }

let as: AuthServer
let allowed: DevServer
let required: DevServer

beforeAll(async () => {
  as = await startAuthServer()
  try {
    // Both servers start at once: they are independent process groups.
    ;[allowed, required] = await Promise.all([
      startDevServer({ vars: as.workerVars() }),
      startDevServer({ vars: { ...as.workerVars(), AUTH_DPOP: 'required' } }),
    ])
  } catch (error) {
    await Promise.allSettled([allowed?.stop(), required?.stop(), as.stop()])
    throw error
  }
  await as.addResource(allowed.mcpUrl)
  await as.addResource(required.mcpUrl)
})

afterAll(async () => {
  await Promise.allSettled([allowed?.stop(), required?.stop()])
  await as?.stop()
})


interface Sent {
  url: string
  method: string
  headers: Headers
  body: string
}

/** A fetch under the SDK's DPoP layer that records what went on the wire to the MCP server (what a thief could capture). */
function recordingFetch(mcpUrl: string, sent: Sent[]): FetchLike {
  return async (input, init) => {
    const url = input instanceof Request ? input.url : input.toString()
    if (url === mcpUrl && init?.method === 'POST') {
      sent.push({ url, method: 'POST', headers: new Headers(init.headers), body: typeof init.body === 'string' ? init.body : '' })
    }
    return fetch(input, init)
  }
}

async function dpopClient(server: DevServer): Promise<{ client: Client; provider: DpopClientCredentialsProvider; sent: Sent[] }> {
  const provider = new DpopClientCredentialsProvider(
    { clientId: as.clients.dpop.clientId, clientSecret: as.clients.dpop.clientSecret, expectedIssuer: as.issuer, scope: 'customers:read orders:read' },
    await DpopSession.create(),
  )
  const sent: Sent[] = []
  const transport = new StreamableHTTPClientTransport(new URL(server.mcpUrl), { authProvider: provider, fetch: recordingFetch(server.mcpUrl, sent) })
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode: { pin: NEWEST_REVISION } } })
  await client.connect(transport)
  return { client, provider, sent }
}

/** A plain JSON-RPC tools/list to /mcp with the given headers. */
function post(server: DevServer, headers: Record<string, string>, body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} })): Promise<Response> {
  return fetch(server.mcpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', ...headers },
    body,
  })
}

describe('AUTH_DPOP=allowed: a DPoP client of a real authorization server', () => {
  let client: Client
  let provider: DpopClientCredentialsProvider
  let sent: Sent[]

  beforeAll(async () => {
    ;({ client, provider, sent } = await dpopClient(allowed))
  })
  afterAll(async () => {
    await client?.close()
  })

  it('gets a token bound to its key and calls tools with a proof on every request', async () => {
    const tokens = provider.tokens()!
    expect(tokens.token_type.toLowerCase()).toBe('dpop')
    expect(decodeJwt(tokens.access_token)).toMatchObject({ aud: allowed.mcpUrl, cnf: { jkt: provider.session.thumbprint } })

    expect(toolNames(await client.listTools()).sort()).toEqual(['get_customer', 'list_orders'])
    const { customer } = structured(await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_001' } }), z.object({ customer: Customer }))
    expect(customer.id).toBe('cus_001')

    const last = sent.at(-1)!
    expect(last.headers.get('authorization')).toBe(`DPoP ${tokens.access_token}`)
    expect(last.headers.get('dpop')).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/)
  })

  it('refuses the captured token replayed as Bearer (no key)', async () => {
    const token = provider.tokens()!.access_token
    const res = await post(allowed, { authorization: `Bearer ${token}` })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_token"/)
  })

  it('refuses the captured token replayed with a proof made by another key', async () => {
    const token = provider.tokens()!.access_token
    const thief = await DpopSession.create()
    const proof = await thief.buildProof({ htm: 'POST', htu: allowed.mcpUrl, accessToken: token })
    const res = await post(allowed, { authorization: `DPoP ${token}`, dpop: proof })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof"/)
  })

  it('refuses a captured request replayed whole: the same token and the same proof', async () => {
    const captured = sent.at(-1)!
    const res = await post(allowed, { authorization: captured.headers.get('authorization')!, dpop: captured.headers.get('dpop')! }, captured.body)
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof"/)
    // The client itself, with fresh proofs, carries on.
    expect(toolNames(await client.listTools()).length).toBe(2)
  })

  it('still serves a plain bearer client', async () => {
    const token = (await as.clientCredentialsToken(as.clients.reader, { resource: allowed.mcpUrl, scope: 'customers:read orders:read' })).access_token
    const res = await post(allowed, { authorization: `Bearer ${token}` })
    expect(res.status).toBe(200)
  })
})

describe('AUTH_DPOP=required', () => {
  it('refuses a plain bearer client (the SDK client cannot connect; a raw request gets the DPoP challenge)', async () => {
    const provider = new ClientCredentialsProvider({ clientId: as.clients.reader.clientId, clientSecret: as.clients.reader.clientSecret, expectedIssuer: as.issuer, scope: as.clients.reader.scope })
    const client = new Client(CLIENT_INFO, { versionNegotiation: { mode: { pin: NEWEST_REVISION } } })
    await expect(client.connect(new StreamableHTTPClientTransport(new URL(required.mcpUrl), { authProvider: provider }))).rejects.toThrow()
    await client.close().catch(() => {})

    const token = (await as.clientCredentialsToken(as.clients.reader, { resource: required.mcpUrl, scope: 'customers:read orders:read' })).access_token
    const res = await post(required, { authorization: `Bearer ${token}` })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_token", error_description="invalid token", algs="[^"]+", Bearer resource_metadata=/)
  })

  it('serves the DPoP client, and says so in its protected-resource metadata', async () => {
    const { client } = await dpopClient(required)
    try {
      expect(toolNames(await client.listTools()).sort()).toEqual(['get_customer', 'list_orders'])
    } finally {
      await client.close()
    }
    const prm = (await (await fetch(`${required.url}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>
    expect(prm).toMatchObject({ dpop_bound_access_tokens_required: true, dpop_signing_alg_values_supported: expect.arrayContaining(['ES256', 'EdDSA']) })
  })
})
