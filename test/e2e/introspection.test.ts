// Opaque access tokens end to end (RFC 7662, issue #24): the real
// authorization server (oidc-provider, support/auth-server.ts) issues opaque
// tokens for this MCP server's URL, and the real server (`npm run dev`) knows
// them only by asking the AS's introspection endpoint — no JWKS is configured
// (AUTH_ISSUER + AUTH_INTROSPECTION_* only). The SDK clients discover the AS
// from the protected-resource metadata as they would for JWTs. One AS and one
// Worker for the file; the tests run in order, and the flood of made-up
// tokens comes last. Every test starts with the Worker's introspection budget
// full (a second's pause refills the AUTH_INTROSPECTION_RATE bucket), so no
// test's fresh tokens are refused 503 for another test's use of it.
import {
  Client,
  ClientCredentialsProvider,
  DpopSession,
  InsufficientScopeError,
  StreamableHTTPClientTransport,
  type OAuthClientProvider,
} from '@modelcontextprotocol/client'
import { ClientCredentialsProvider as V1ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js'
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { decodeProtectedHeader } from 'jose'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { POLICY } from '../../src/policy/policy.ts'
import { startAuthServer, type AuthServer, type ConfidentialClient } from './support/auth-server.ts'
import { Customer, DpopClientCredentialsProvider, NEWEST_REVISION, postRpc, structured, toolNames } from './support/mcp.ts'
import { startDevServer, type DevServer } from './support/server.ts'

/** AUTH_INTROSPECTION_CACHE_SECONDS here (default 60): short, so a revocation is seen within the test. */
const CACHE_SECONDS = 2
/** AUTH_INTROSPECTION_TIMEOUT_MS here (default 3000). */
const TIMEOUT_MS = 1000
/** AUTH_INTROSPECTION_RATE here (default 50): uncached tokens introspected per second (a bucket of this size). */
const RATE = 5
/** How long the AS holds each introspection answer in 'slow' mode: well past the Worker's timeout. */
const SLOW_DELAY_MS = 4 * TIMEOUT_MS
/** Waits are for the cache entry to run out or the rate bucket to refill, never assertions about speed. */
const CACHE_WAIT_MS = CACHE_SECONDS * 1000 + 500
/** The bucket refills at RATE per second up to RATE: one second from empty to full. */
const BUCKET_REFILL_MS = 1000 + 100
const CLIENT_INFO = { name: 'bastion-introspection-e2e', version: '1.0.0' }
const OTHER_RESOURCE = 'https://other-api.example/mcp'
const READER_SCOPES = 'customers:read orders:read'
const READER_TOOLS = ['get_customer', 'list_orders']
const EDITOR_TOOLS = ['create_ticket', 'get_customer', 'list_orders', 'update_order']
const ALL_TOOLS = [...POLICY.tools.keys()].sort()

let as: AuthServer
let worker: DevServer

beforeAll(async () => {
  as = await startAuthServer()
  try {
    worker = await startDevServer({
      vars: {
        ...as.introspectionVars(),
        AUTH_INTROSPECTION_CACHE_SECONDS: String(CACHE_SECONDS),
        AUTH_INTROSPECTION_TIMEOUT_MS: String(TIMEOUT_MS),
        AUTH_INTROSPECTION_RATE: String(RATE),
      },
    })
  } catch (error) {
    await as.stop()
    throw error
  }
  await as.addResource(worker.mcpUrl, { accessTokenFormat: 'opaque' })
  await as.addResource(OTHER_RESOURCE, { accessTokenFormat: 'opaque' })
})

afterAll(async () => {
  await worker?.stop()
  await as?.stop()
})

beforeEach(async () => {
  await sleep(BUCKET_REFILL_MS)
})

// ---- helpers ----

const rpc = (authorization: string | undefined, method?: string, params?: unknown, headers?: Record<string, string>) => postRpc(worker.mcpUrl, authorization, method, params, headers)

const bearer = (token: string) => `Bearer ${token}`

/** A fresh opaque token from the token endpoint (no SDK). */
const tokenFor = async (client: ConfidentialClient = as.clients.reader, resource = worker.mcpUrl, scope = READER_SCOPES) =>
  (await as.clientCredentialsToken(client, { resource, scope })).access_token

const RpcResult = z.object({ result: z.unknown() })
const listed = async (response: Response) => toolNames(RpcResult.parse(await response.json()).result).sort()

/** Opaque: not a JWS, and nothing a JWT library can read a header from. */
function expectOpaque(token: string): void {
  expect(token.split('.')).toHaveLength(1)
  expect(() => decodeProtectedHeader(token)).toThrow()
}

/** Tracks clients to close after each test. */
const open: { close(): Promise<void> }[] = []
async function closeAll() {
  await Promise.allSettled(open.splice(0).map((c) => c.close()))
}

async function connectV2(authProvider: OAuthClientProvider): Promise<Client> {
  // 'throw': a 403 insufficient_scope reaches the caller (no silent re-authorization with more scopes).
  const transport = new StreamableHTTPClientTransport(new URL(worker.mcpUrl), { authProvider, onInsufficientScope: 'throw' })
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode: { pin: NEWEST_REVISION } } })
  await client.connect(transport)
  open.push(client)
  return client
}


// ---- SDK clients with opaque tokens ----

describe('SDK clients of an authorization server that issues opaque tokens', () => {
  it('SDK v2 ClientCredentialsProvider connects with an opaque token, lists exactly its scopes’ tools and calls get_customer', async () => {
    try {
      await as.resetStats()
      const provider = new ClientCredentialsProvider({ clientId: as.clients.reader.clientId, clientSecret: as.clients.reader.clientSecret, expectedIssuer: as.issuer, scope: READER_SCOPES })
      const client = await connectV2(provider)
      expect(toolNames(await client.listTools()).sort()).toEqual(READER_TOOLS)
      const { customer } = structured(await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_001' } }), z.object({ customer: Customer }))
      expect(customer.id).toBe('cus_001')

      expectOpaque(provider.tokens()!.access_token)
      expect(provider.tokens()!.scope).toBe(READER_SCOPES)
      // The Worker learnt what the token is from the AS, not from the token.
      expect((await as.stats()).introspection).toBeGreaterThanOrEqual(1)
    } finally {
      await closeAll()
    }
  })

  it('a tool outside the opaque token’s scopes is refused: the SDK surfaces the 403 insufficient_scope naming the scope', async () => {
    try {
      const provider = new ClientCredentialsProvider({ clientId: as.clients.reader.clientId, clientSecret: as.clients.reader.clientSecret, expectedIssuer: as.issuer, scope: READER_SCOPES })
      const client = await connectV2(provider)
      const refusal: unknown = await client.callTool({ name: 'search_products', arguments: { query: 'cable' } }).then(
        (result) => ({ unexpectedResult: result }),
        (error: unknown) => error,
      )
      expect(refusal).toBeInstanceOf(InsufficientScopeError)
      expect((refusal as InsufficientScopeError).requiredScope).toBe('products:read')
    } finally {
      await closeAll()
    }
  })

  it('SDK v1 ClientCredentialsProvider (2025-11-25 initialize) connects with an opaque token, lists only its tools and calls one', async () => {
    const provider = new V1ClientCredentialsProvider({ clientId: as.clients.reader.clientId, clientSecret: as.clients.reader.clientSecret, expectedIssuer: as.issuer, scope: READER_SCOPES })
    const transport = new V1Transport(new URL(worker.mcpUrl), { authProvider: provider })
    const client = new V1Client(CLIENT_INFO)
    try {
      await client.connect(transport)
      expect(transport.protocolVersion).toBe('2025-11-25')
      expect(toolNames(await client.listTools()).sort()).toEqual(READER_TOOLS)
      const result = await client.callTool({ name: 'list_orders', arguments: { customerId: 'cus_001', limit: 2 } })
      expect(result.isError).not.toBe(true)
      expectOpaque(provider.tokens()!.access_token)
    } finally {
      await client.close()
    }
  })
})

// ---- roles from the introspection response ----

describe('role claims in the introspection response', () => {
  it('role "editor" (an extra token claim the AS returns on introspection) decides tools/list as on the JWT path', async () => {
    try {
      const provider = new ClientCredentialsProvider({ clientId: as.clients.editor.clientId, clientSecret: as.clients.editor.clientSecret, expectedIssuer: as.issuer })
      const client = await connectV2(provider)
      expectOpaque(provider.tokens()!.access_token)
      // Only the start scopes were asked for; the role brings the rest.
      expect(provider.tokens()!.scope).toBe(READER_SCOPES)
      expect(toolNames(await client.listTools()).sort()).toEqual(EDITOR_TOOLS)
    } finally {
      await closeAll()
    }
  })

  it('role "admin" lists every tool of the policy', async () => {
    const response = await rpc(bearer(await tokenFor(as.clients.admin)))
    expect(response.status).toBe(200)
    expect(await listed(response)).toEqual(ALL_TOOLS)
  })
})

// ---- cache ----

describe('the introspection cache', () => {
  it('two calls with the same token within the cache TTL cost the AS exactly one introspection request', async () => {
    const token = await tokenFor()
    await as.resetStats()
    const first = await rpc(bearer(token))
    const second = await rpc(bearer(token), 'tools/call', { name: 'get_customer', arguments: { customerId: 'cus_002' } })
    expect([first.status, second.status]).toEqual([200, 200])
    expect(await listed(first)).toEqual(READER_TOOLS)
    expect((await as.stats()).introspection).toBe(1)
  })

  it('a revoked token is refused 401 invalid_token once its cache entry has expired', async () => {
    const token = await tokenFor()
    expect((await rpc(bearer(token))).status).toBe(200)
    await as.revoke(as.clients.reader, token)
    await sleep(CACHE_WAIT_MS)
    await as.resetStats()
    const response = await rpc(bearer(token))
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/)
    // The refusal came from asking the AS again, not from a stale entry.
    expect((await as.stats()).introspection).toBe(1)
  })
})

// ---- audience and DPoP ----

describe('what the introspection response says about the token', () => {
  it('a token the same AS issued for another resource (aud) is refused 401 invalid_token', async () => {
    const other = await tokenFor(as.clients.reader, OTHER_RESOURCE)
    expectOpaque(other)
    const response = await rpc(bearer(other), 'tools/call', { name: 'get_customer', arguments: { customerId: 'cus_001' } })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/)
    // Same client and scopes for this resource: accepted, so the audience is the only difference.
    expect((await rpc(bearer(await tokenFor()), 'tools/call', { name: 'get_customer', arguments: { customerId: 'cus_001' } })).status).toBe(200)
  })

  it('a DPoP-bound opaque token (cnf.jkt from introspection) works with proofs and is refused 401 as Bearer', async () => {
    const provider = new DpopClientCredentialsProvider(
      { clientId: as.clients.dpop.clientId, clientSecret: as.clients.dpop.clientSecret, expectedIssuer: as.issuer, scope: READER_SCOPES },
      await DpopSession.create(),
    )
    try {
      const client = await connectV2(provider)
      expect(provider.tokens()!.token_type.toLowerCase()).toBe('dpop')
      expectOpaque(provider.tokens()!.access_token)
      expect(toolNames(await client.listTools()).sort()).toEqual(READER_TOOLS)
      const { customer } = structured(await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_003' } }), z.object({ customer: Customer }))
      expect(customer.id).toBe('cus_003')

      const asBearer = await rpc(bearer(provider.tokens()!.access_token))
      expect(asBearer.status).toBe(401)
      expect(asBearer.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_token"/)
    } finally {
      await closeAll()
    }
  })
})

// ---- the introspection endpoint failing ----

describe('the introspection endpoint unavailable', () => {
  it('down (HTTP 503 at the AS): 503 with Retry-After, never 200 and never 401; the same token is served once it is back', async () => {
    const token = await tokenFor()
    await as.setIntrospection('down')
    try {
      await as.resetStats()
      const response = await rpc(bearer(token))
      expect(response.status).toBe(503)
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(response.headers.get('www-authenticate')).toBeNull()
      expect((await as.stats()).introspection).toBeGreaterThanOrEqual(1)
    } finally {
      await as.setIntrospection('up')
    }
    // An outage is not cached.
    const up = await rpc(bearer(token))
    expect(up.status).toBe(200)
    expect(await listed(up)).toEqual(READER_TOOLS)
  })

  it('slower than AUTH_INTROSPECTION_TIMEOUT_MS: 503 with Retry-After, answered while the AS still holds its reply', async () => {
    expect(SLOW_DELAY_MS).toBeGreaterThan(TIMEOUT_MS)
    const token = await tokenFor()
    await as.setIntrospection('slow', SLOW_DELAY_MS)
    try {
      await as.resetStats()
      const response = await rpc(bearer(token))
      expect(response.status).toBe(503)
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(response.headers.get('www-authenticate')).toBeNull()
      expect((await as.stats()).introspection).toBe(1)
    } finally {
      await as.setIntrospection('up')
    }
    const up = await rpc(bearer(token))
    expect(up.status).toBe(200)
  })
})

// ---- last: a flood of made-up tokens ----

describe('a flood of made-up opaque tokens', () => {
  it('100 distinct random tokens at once are all refused (401 or 503), and the AS sees at most AUTH_INTROSPECTION_RATE per second of them', async () => {
    await as.resetStats()
    const started = Date.now()
    const tokens = Array.from({ length: 100 }, () => randomBytes(32).toString('base64url'))
    const responses = await Promise.all(tokens.map((t) => rpc(bearer(t))))
    const elapsedSeconds = (Date.now() - started) / 1000

    const statuses = responses.map((r) => r.status)
    expect(statuses.every((s) => s === 401 || s === 503)).toBe(true)
    for (const r of responses) {
      if (r.status === 401) expect(r.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/)
      else expect(r.headers.get('retry-after')).toBeTruthy()
      await r.body?.cancel()
    }
    // Some were asked about (and found inactive), the rest refused without asking.
    expect(statuses).toContain(401)
    expect(statuses).toContain(503)
    const asked = (await as.stats()).introspection
    expect(asked).toBeGreaterThanOrEqual(1)
    expect(asked).toBeLessThanOrEqual(RATE * (Math.ceil(elapsedSeconds) + 1))
    expect(asked).toBe(statuses.filter((s) => s === 401).length)
  })
})
