// Real OAuth end to end: a real authorization server (oidc-provider on
// loopback, support/auth-server.ts) in front of the real server (`npm run dev`:
// wrangler dev) that trusts it only through AUTH_ISSUER + AUTH_JWKS_URL, and
// the SDKs' own OAuth clients discovering everything from the 401 challenge
// and the protected-resource metadata. One authorization server and one
// Worker for the whole file; the tests run in order and the first one relies
// on the Worker not having fetched the JWKS yet.
import {
  Client,
  ClientCredentialsProvider,
  StreamableHTTPClientTransport,
  UnauthorizedError,
  type OAuthClientInformationMixed,
  type OAuthClientMetadata,
  type OAuthClientProvider,
  type OAuthDiscoveryState,
  type OAuthTokens,
} from '@modelcontextprotocol/client'
import { ClientCredentialsProvider as V1ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js'
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { startAuthServer, type AuthServer } from './support/auth-server.ts'
import { Customer, NEWEST_REVISION, postRpc, Product, structured, toolNames } from './support/mcp.ts'
import { startDevServer, type DevServer } from './support/server.ts'

/** The Worker's AUTH_JWKS_COOLDOWN_SECONDS here (the default is 30). */
const COOLDOWN_SECONDS = 1
/** Waits are for the cooldown to pass, never assertions about speed. */
const COOLDOWN_WAIT_MS = COOLDOWN_SECONDS * 1000 + 500
const CLIENT_INFO = { name: 'bastion-oauth-e2e', version: '1.0.0' }
const OTHER_RESOURCE = 'https://other-api.example/mcp'

let as: AuthServer
let worker: DevServer

beforeAll(async () => {
  as = await startAuthServer()
  try {
    worker = await startDevServer({ vars: { ...as.workerVars(), AUTH_JWKS_COOLDOWN_SECONDS: String(COOLDOWN_SECONDS) } })
  } catch (error) {
    await as.stop()
    throw error
  }
  await as.addResource(worker.mcpUrl)
  await as.addResource(OTHER_RESOURCE)
})

afterAll(async () => {
  await worker?.stop()
  await as?.stop()
})

// ---- helpers ----

const rpc = (token: string | undefined, method?: string, params?: unknown) => postRpc(worker.mcpUrl, token ? `Bearer ${token}` : undefined, method, params)

const readerToken = async () => (await as.clientCredentialsToken(as.clients.reader, { resource: worker.mcpUrl, scope: 'customers:read orders:read' })).access_token

/** Tracks clients to close after each test. */
const open: { close(): Promise<void> }[] = []
async function closeAll() {
  await Promise.allSettled(open.splice(0).map((c) => c.close()))
}

/**
 * A user's MCP client app: authorization code + PKCE with a registered public
 * client. The browser step is played by `as.authorize` (login + consent at
 * the AS's development pages); the callback URL it returns is what the app's
 * redirect handler would receive.
 */
class UserAppProvider implements OAuthClientProvider {
  private _tokens: OAuthTokens | undefined
  private _verifier: string | undefined
  private _discovery: OAuthDiscoveryState | undefined
  /** The redirect back to the app from the last authorization. */
  callback: URL | undefined
  /** Every authorization URL the SDK sent the user to. */
  readonly authorizations: URL[] = []

  constructor(private readonly login: string) {}

  get redirectUrl(): string {
    return as.clients.user.redirectUri
  }
  get clientMetadata(): OAuthClientMetadata {
    return { client_name: 'bastion e2e user app', redirect_uris: [as.clients.user.redirectUri], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' }
  }
  clientInformation(): OAuthClientInformationMixed {
    return { client_id: as.clients.user.clientId }
  }
  tokens(): OAuthTokens | undefined {
    return this._tokens
  }
  saveTokens(tokens: OAuthTokens): void {
    this._tokens = tokens
  }
  async redirectToAuthorization(url: URL): Promise<void> {
    this.authorizations.push(url)
    this.callback = await as.authorize(url, { login: this.login })
  }
  saveCodeVerifier(verifier: string): void {
    this._verifier = verifier
  }
  codeVerifier(): string {
    if (!this._verifier) throw new Error('no code verifier saved')
    return this._verifier
  }
  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this._discovery = state
  }
  discoveryState(): OAuthDiscoveryState | undefined {
    return this._discovery
  }
  /** Test hook: spoil the access token (keeping the refresh token), as an expired one would be. */
  spoilAccessToken(): void {
    if (this._tokens) this._tokens = { ...this._tokens, access_token: 'spoiled.access.token' }
  }
}

/** The SDK v2 transport with an OAuth provider; `connect` on a fresh client. */
async function connectV2(authProvider: OAuthClientProvider): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(worker.mcpUrl), { authProvider })
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode: { pin: NEWEST_REVISION } } })
  await client.connect(transport)
  open.push(client)
  return { client, transport }
}

/** A token from a key the AS never published, otherwise well-formed for this Worker. */
async function forgedToken(kid: string): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256')
  return new SignJWT({ scope: 'customers:read' })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
    .setIssuer(as.issuer)
    .setAudience(worker.mcpUrl)
    .setSubject('mallory')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(privateKey)
}

const RpcResult = z.object({ result: z.unknown() })

// ---- (d) first: nothing cached yet ----

describe('the issuer JWKS endpoint down while nothing is cached', () => {
  it('answers 503 with Retry-After (never 200, never 401) and serves again once the JWKS is back', async () => {
    // The AS's token endpoint works; only its /jwks is down, before the Worker ever fetched it.
    const token = await readerToken()
    await as.setJwksAvailable(false)
    try {
      const down = await rpc(token)
      expect(down.status).toBe(503)
      expect(Number(down.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(down.headers.get('www-authenticate')).toBeNull()
      const body = (await down.json()) as { error?: { message?: string } }
      expect(body.error?.message).toMatch(/temporarily unavailable/)
      expect(JSON.stringify(body)).not.toContain('HTTP 503')
      expect((await as.stats()).jwks).toBeGreaterThanOrEqual(1)
    } finally {
      await as.setJwksAvailable(true)
    }
    await sleep(COOLDOWN_WAIT_MS)
    const up = await rpc(token)
    expect(up.status).toBe(200)
    expect(toolNames(RpcResult.parse(await up.json()).result).sort()).toEqual(['get_customer', 'list_orders'])
  })
})

// ---- (a) client_credentials, least privilege ----

describe('client_credentials with a least-privilege client (customers:read orders:read only)', () => {
  it('the 401 challenge names exactly the scopes to start with, and none the reader lacks', async () => {
    const response = await rpc(undefined)
    expect(response.status).toBe(401)
    const challenge = response.headers.get('www-authenticate') ?? ''
    expect(challenge).toContain('scope="customers:read orders:read"')
    expect(challenge).not.toContain('offline_access')
  })

  it('SDK v2 ClientCredentialsProvider connects, lists only its tools and calls one', async () => {
    try {
      await as.resetStats()
      const provider = new ClientCredentialsProvider({ clientId: as.clients.reader.clientId, clientSecret: as.clients.reader.clientSecret, expectedIssuer: as.issuer, scope: as.clients.reader.scope })
      const { client } = await connectV2(provider)
      expect(toolNames(await client.listTools()).sort()).toEqual(['get_customer', 'list_orders'])
      const { customer } = structured(await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_001' } }), z.object({ customer: Customer }))
      expect(customer.id).toBe('cus_001')

      // The SDK got an RFC 9068 token for this MCP server, with exactly the granted scopes.
      const token = provider.tokens()!.access_token
      expect(decodeProtectedHeader(token).typ).toBe('at+jwt')
      expect(decodeJwt(token)).toMatchObject({ iss: as.issuer, aud: worker.mcpUrl, sub: as.clients.reader.clientId, scope: 'customers:read orders:read' })
      expect((await as.stats()).token).toBe(1)
    } finally {
      await closeAll()
    }
  })

  it('SDK v1 ClientCredentialsProvider (2025-11-25 initialize) connects, lists only its tools and calls one', async () => {
    const provider = new V1ClientCredentialsProvider({ clientId: as.clients.reader.clientId, clientSecret: as.clients.reader.clientSecret, expectedIssuer: as.issuer, scope: as.clients.reader.scope })
    const transport = new V1Transport(new URL(worker.mcpUrl), { authProvider: provider })
    const client = new V1Client(CLIENT_INFO)
    try {
      await client.connect(transport)
      expect(transport.protocolVersion).toBe('2025-11-25')
      expect(toolNames(await client.listTools()).sort()).toEqual(['get_customer', 'list_orders'])
      const result = await client.callTool({ name: 'list_orders', arguments: { customerId: 'cus_001', limit: 2 } })
      expect(result.isError).not.toBe(true)
      expect(decodeJwt(provider.tokens()!.access_token).scope).toBe('customers:read orders:read')
    } finally {
      await client.close()
    }
  })

  it('the AS refuses the reader a scope it was not granted (invalid_scope), so asking for everything could never work', async () => {
    await expect(as.clientCredentialsToken(as.clients.reader, { resource: worker.mcpUrl, scope: 'customers:read orders:read products:read' })).rejects.toThrow(/invalid_scope/)
  })

  it('a client whose token carries role "editor" gets the editor tools from the role claim, asking only for the start scopes', async () => {
    try {
      const provider = new ClientCredentialsProvider({ clientId: as.clients.editor.clientId, clientSecret: as.clients.editor.clientSecret, expectedIssuer: as.issuer })
      const { client } = await connectV2(provider)
      expect(decodeJwt(provider.tokens()!.access_token)).toMatchObject({ role: 'editor', scope: 'customers:read orders:read' })
      expect(toolNames(await client.listTools()).sort()).toEqual(['create_ticket', 'get_customer', 'list_orders', 'update_order'])
    } finally {
      await closeAll()
    }
  })
})

// ---- (b) authorization code + PKCE, step-up, refresh ----

describe('authorization code + PKCE for a user, with step-up', () => {
  it('connects as alice with the start scopes, steps up to products:read on a 403, and the retried call succeeds', async () => {
    const provider = new UserAppProvider('alice')
    try {
      // 1. First connect: 401 → discovery → the SDK sends alice to the AS (login + consent) → callback.
      const first = new StreamableHTTPClientTransport(new URL(worker.mcpUrl), { authProvider: provider })
      const firstClient = new Client(CLIENT_INFO, { versionNegotiation: { mode: { pin: NEWEST_REVISION } } })
      await expect(firstClient.connect(first)).rejects.toBeInstanceOf(UnauthorizedError)
      expect(provider.callback?.searchParams.get('code')).toBeTruthy()
      const firstRequest = provider.authorizations[0]!
      expect(firstRequest.searchParams.get('code_challenge_method')).toBe('S256')
      expect(firstRequest.searchParams.get('resource')).toBe(worker.mcpUrl)
      expect(firstRequest.searchParams.get('scope')?.split(' ')).toEqual(expect.arrayContaining(['customers:read', 'orders:read']))
      expect(firstRequest.searchParams.get('scope')).not.toContain('products:read')
      await first.finishAuth(provider.callback!.searchParams)
      await firstClient.close().catch(() => {})

      const { client, transport } = await connectV2(provider)
      expect(decodeJwt(provider.tokens()!.access_token)).toMatchObject({ sub: 'alice', aud: worker.mcpUrl })
      expect(toolNames(await client.listTools()).sort()).toEqual(['get_customer', 'list_orders'])

      // 2. search_products needs products:read: 403 insufficient_scope → the SDK asks the AS again for the union.
      const stepUp = client.callTool({ name: 'search_products', arguments: { query: 'cable' } })
      await expect(stepUp).rejects.toBeInstanceOf(UnauthorizedError)
      expect(provider.authorizations).toHaveLength(2)
      expect(provider.authorizations[1]!.searchParams.get('scope')?.split(' ')).toEqual(expect.arrayContaining(['customers:read', 'orders:read', 'products:read']))
      await transport.finishAuth(provider.callback!.searchParams)
      expect(decodeJwt(provider.tokens()!.access_token).scope).toContain('products:read')

      // 3. The retried call succeeds with the stepped-up token.
      const { products } = structured(await client.callTool({ name: 'search_products', arguments: { query: 'cable' } }), z.object({ products: z.array(Product) }))
      expect(Array.isArray(products)).toBe(true)
    } finally {
      await closeAll()
    }
  })

  it('refreshes with the refresh token when the access token is refused, without sending the user to the AS again', async () => {
    const provider = new UserAppProvider('alice')
    try {
      const first = new StreamableHTTPClientTransport(new URL(worker.mcpUrl), { authProvider: provider })
      await expect(new Client(CLIENT_INFO).connect(first)).rejects.toBeInstanceOf(UnauthorizedError)
      await first.finishAuth(provider.callback!.searchParams)
      expect(provider.tokens()?.refresh_token).toBeTruthy()
      const { client } = await connectV2(provider)
      const before = provider.tokens()!

      provider.spoilAccessToken()
      const { customer } = structured(await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_002' } }), z.object({ customer: Customer }))
      expect(customer.id).toBe('cus_002')
      expect(provider.authorizations).toHaveLength(1)
      expect(provider.tokens()!.access_token).not.toBe(before.access_token)
      expect(provider.tokens()!.access_token).not.toBe('spoiled.access.token')
      expect(decodeJwt(provider.tokens()!.access_token)).toMatchObject({ sub: 'alice', aud: worker.mcpUrl })
    } finally {
      await closeAll()
    }
  })

  it('an account whose token carries role "read-only" sees that role’s tools', async () => {
    const provider = new UserAppProvider('rita')
    try {
      const first = new StreamableHTTPClientTransport(new URL(worker.mcpUrl), { authProvider: provider })
      await expect(new Client(CLIENT_INFO).connect(first)).rejects.toBeInstanceOf(UnauthorizedError)
      await first.finishAuth(provider.callback!.searchParams)
      const { client } = await connectV2(provider)
      expect(decodeJwt(provider.tokens()!.access_token).role).toBe('read-only')
      expect(toolNames(await client.listTools()).sort()).toEqual(['get_customer', 'list_orders', 'search_products'])
    } finally {
      await closeAll()
    }
  })
})

// ---- (c) key rotation and garbage kids ----

describe('key rotation at the authorization server', () => {
  it('accepts tokens signed with the new key without a Worker restart, and old-key tokens until they expire', async () => {
    const oldToken = await readerToken()
    expect((await rpc(oldToken)).status).toBe(200)

    const { kid } = await as.rotateKeys()
    const newToken = await readerToken()
    expect(decodeProtectedHeader(newToken).kid).toBe(kid)
    await as.resetStats()
    await sleep(COOLDOWN_WAIT_MS)

    expect((await rpc(newToken)).status).toBe(200)
    expect((await as.stats()).jwks).toBe(1)
    expect((await rpc(oldToken)).status).toBe(200)
    expect((await rpc(newToken)).status).toBe(200)
    expect((await as.stats()).jwks).toBe(1)
  })

  it('a flood of tokens with garbage kids is refused 401 and costs the AS at most one JWKS fetch per cooldown', async () => {
    await sleep(COOLDOWN_WAIT_MS)
    await as.resetStats()
    const started = Date.now()
    const statuses: number[] = []
    // 4 waves of 25 concurrent requests, each kid different.
    for (let wave = 0; wave < 4; wave++) {
      const tokens = await Promise.all(Array.from({ length: 25 }, (_, i) => forgedToken(`garbage-${wave}-${i}-${Math.random().toString(36).slice(2)}`)))
      const responses = await Promise.all(tokens.map((t) => rpc(t)))
      for (const r of responses) {
        statuses.push(r.status)
        expect(r.headers.get('www-authenticate')).toContain('error="invalid_token"')
      }
    }
    const elapsed = Date.now() - started
    expect(statuses).toHaveLength(100)
    expect(statuses.every((s) => s === 401)).toBe(true)
    // Attempts are at least a cooldown apart: the bound follows from the elapsed time, whatever the machine's speed.
    const fetches = (await as.stats()).jwks
    expect(fetches).toBeGreaterThanOrEqual(1)
    expect(fetches).toBeLessThanOrEqual(1 + Math.floor(elapsed / (COOLDOWN_SECONDS * 1000)))
  })

  it('a new key that cannot be fetched (JWKS down) is 503, not 401 and not a pass; cached keys keep working', async () => {
    const cachedKeyToken = await readerToken()
    expect((await rpc(cachedKeyToken)).status).toBe(200)
    await as.rotateKeys()
    const unseenKeyToken = await readerToken()
    await as.setJwksAvailable(false)
    try {
      await sleep(COOLDOWN_WAIT_MS)
      const response = await rpc(unseenKeyToken)
      expect(response.status).toBe(503)
      expect(response.headers.get('retry-after')).toBeTruthy()
      expect((await rpc(cachedKeyToken)).status).toBe(200)
    } finally {
      await as.setJwksAvailable(true)
    }
    await sleep(COOLDOWN_WAIT_MS)
    expect((await rpc(unseenKeyToken)).status).toBe(200)
  })
})

// ---- (e) audience ----

describe('a token for another resource from the same authorization server', () => {
  it('is refused 401 invalid_token (wrong aud), though its issuer, key and scopes are right', async () => {
    const other = await as.clientCredentialsToken(as.clients.reader, { resource: OTHER_RESOURCE, scope: 'customers:read orders:read' })
    expect(decodeJwt(other.access_token)).toMatchObject({ iss: as.issuer, aud: OTHER_RESOURCE, scope: 'customers:read orders:read' })
    const response = await rpc(other.access_token, 'tools/call', { name: 'get_customer', arguments: { customerId: 'cus_001' } })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/)
    expect(response.headers.get('www-authenticate')).toContain(`resource_metadata="${worker.url}/.well-known/oauth-protected-resource/mcp"`)
  })

  it('the same client, same scopes, for this resource is accepted (the audience is the only difference)', async () => {
    const mine = await readerToken()
    const response = await rpc(mine, 'tools/call', { name: 'get_customer', arguments: { customerId: 'cus_001' } })
    expect(response.status).toBe(200)
  })
})

// ---- last: the authorization server process gone ----

describe('the authorization server stopped (connection refused)', () => {
  it('a token whose key is not cached is 503, a cached key keeps verifying, and nothing passes unchecked', async () => {
    const cachedKeyToken = await readerToken()
    expect((await rpc(cachedKeyToken)).status).toBe(200)
    await as.stop()
    await sleep(COOLDOWN_WAIT_MS)
    const unknownKey = await rpc(await forgedToken('after-the-as-is-gone'))
    expect(unknownKey.status).toBe(503)
    expect(unknownKey.headers.get('retry-after')).toBeTruthy()
    expect((await rpc(cachedKeyToken)).status).toBe(200)
  })
})
