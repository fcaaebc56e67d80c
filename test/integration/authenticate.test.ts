// Identity providers through the whole Worker (src/middleware/authenticate.ts
// with src/auth/claims.ts): tokens shaped exactly as Microsoft Entra ID,
// Keycloak, Okta and Auth0 document their access tokens, signed here with the
// test key (those servers cannot run here), decide tools/list and the 403
// exactly as the native form (`scope` string + `role`) does. Opaque tokens
// are introspected at an endpoint stubbed with vi.spyOn(fetch) (the e2e test
// introspection.test.ts runs a real oidc-provider instead).
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it, vi } from 'vitest'
import worker from '../../src/index.ts'
import { mintToken, type MintOptions } from '../support/tokens.ts'
import { testEnv } from '../support/test-env.ts'
import { rpcWith } from '../support/worker.ts'

const NATIVE = testEnv(env)
const MCP = NATIVE.AUTH_AUDIENCE

const call = rpcWith

async function toolNames(settings: Record<string, string>, token: string): Promise<string[]> {
  const res = await call(settings, token, 'tools/list')
  expect(res.status).toBe(200)
  const body = (await res.json()) as { result: { tools: { name: string }[] } }
  return body.result.tools.map((t) => t.name)
}

/** Status and challenge of a tools/call the caller may not make. */
async function refusal(settings: Record<string, string>, token: string): Promise<[number, string | null]> {
  const res = await call(settings, token, 'tools/call', { name: 'execute_query', arguments: { sql: 'SELECT 1' } })
  await res.body?.cancel()
  return [res.status, res.headers.get('www-authenticate')]
}

const ENTRA_APP_ID = '6e74172b-be56-4843-9ff4-e66a39bb12e3'
const NOW = () => Math.floor(Date.now() / 1000)

interface Provider {
  name: string
  settings: Record<string, string>
  /** A token whose IdP role maps to `editor`. */
  editor: MintOptions
  /** A token whose IdP scopes are customers:read and orders:read. */
  reader: MintOptions
  /** A token holding an IdP role name the mapping does not list. */
  unmapped: MintOptions
}

// Claims as each provider's documentation shows them (only `iss`, `aud` and
// the signing key are the test's: AUTH_ISSUER and the test key).
const PROVIDERS: Provider[] = [
  {
    name: 'Microsoft Entra ID (v2 token: aud = application id, scp, roles array)',
    settings: { AUTH_PRESET: 'entra', AUTH_EXTRA_AUDIENCES: ENTRA_APP_ID, AUTH_ROLE_MAP: 'Orders.Editor=editor' },
    editor: {
      sub: 'HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ',
      omit: ['aud'],
      claims: { aud: ENTRA_APP_ID, ver: '2.0', tid: '72f988bf-86f1-41af-91ab-2d7cd011db47', oid: '690222be-ff1a-4d56-abd1-7e4f7d38e474', azp: 'c44b4083-3bb0-49c1-b47d-974e53cbdf3c', azpacr: '0', roles: ['Orders.Editor'], nbf: NOW() - 5 },
    },
    reader: { omit: ['aud'], claims: { aud: ENTRA_APP_ID, ver: '2.0', scp: 'customers:read orders:read', azp: 'c44b4083-3bb0-49c1-b47d-974e53cbdf3c', name: 'Abe Lincoln', preferred_username: 'abeli@example.com' } },
    unmapped: { omit: ['aud'], claims: { aud: ENTRA_APP_ID, ver: '2.0', azp: 'c44b4083-3bb0-49c1-b47d-974e53cbdf3c', roles: ['admin', 'Orders.Reader'] } },
  },
  {
    name: 'Keycloak (realm_access.roles, aud array with account)',
    settings: { AUTH_PRESET: 'keycloak', AUTH_ROLE_MAP: 'mcp-editor=editor' },
    editor: {
      sub: 'f:3d1d2e7a-5c1b-4c4e-9c1e-9b1f1c2d3e4f:alice',
      omit: ['aud'],
      claims: {
        aud: [MCP, 'account'], typ: 'Bearer', azp: 'mcp-agent', session_state: 'b4c8f1d2', acr: '1', scope: 'profile email',
        realm_access: { roles: ['offline_access', 'uma_authorization', 'mcp-editor'] }, resource_access: { account: { roles: ['manage-account'] } },
      },
    },
    reader: { omit: ['aud'], claims: { aud: [MCP, 'account'], typ: 'Bearer', azp: 'mcp-agent', scope: 'profile email customers:read orders:read', realm_access: { roles: ['offline_access'] } } },
    unmapped: { claims: { typ: 'Bearer', scope: 'profile', realm_access: { roles: ['admin', 'default-roles-acme'] } } },
  },
  {
    name: 'Okta custom authorization server (scp array, groups, cid)',
    settings: { AUTH_PRESET: 'okta', AUTH_ROLE_MAP: 'MCP Editors=editor' },
    editor: { sub: 'alice@example.com', claims: { ver: 1, jti: 'AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE', cid: '0oa1a2b3c4d5e6f7g8h9', uid: '00u1a2b3c4d5e6f7g8h9', scp: ['openid', 'profile'], groups: ['Everyone', 'MCP Editors'] } },
    reader: { sub: 'alice@example.com', claims: { ver: 1, cid: '0oa1a2b3c4d5e6f7g8h9', scp: ['customers:read', 'orders:read'] } },
    unmapped: { claims: { ver: 1, scp: ['openid'], groups: ['Everyone', 'admin'] } },
  },
  {
    name: 'Auth0 (scope string + RBAC permissions, namespaced roles claim)',
    settings: { AUTH_PRESET: 'auth0', AUTH_ROLE_CLAIMS: 'https://mcp.example.com/roles', AUTH_ROLE_MAP: 'MCP Editor=editor' },
    editor: { sub: 'auth0|5f7c8ec7c33c6c004bbafe82', omit: ['aud'], claims: { aud: [MCP, 'https://acme.us.auth0.com/userinfo'], azp: 'p1ZJ8xQbQyoWmvQ1', scope: 'openid profile', permissions: [], 'https://mcp.example.com/roles': ['MCP Editor'] } },
    reader: { sub: 'p1ZJ8xQbQyoWmvQ1@clients', claims: { azp: 'p1ZJ8xQbQyoWmvQ1', gty: 'client-credentials', scope: 'customers:read', permissions: ['customers:read', 'orders:read'] } },
    unmapped: { claims: { scope: 'openid', permissions: [], 'https://mcp.example.com/roles': ['admin'] } },
  },
]

describe.each(PROVIDERS)('$name', (provider) => {
  it('a mapped IdP role lists exactly the tools of the native role', async () => {
    expect(await toolNames(provider.settings, await mintToken(provider.editor))).toEqual(await toolNames({}, await mintToken({ role: 'editor' })))
  })

  it('a mapped IdP role is refused a tool outside it with the native 403 challenge', async () => {
    const native = await refusal({}, await mintToken({ role: 'editor' }))
    expect(native[0]).toBe(403)
    expect(await refusal(provider.settings, await mintToken(provider.editor))).toEqual(native)
  })

  it('scopes from the IdP claim list exactly the tools of the same native scopes', async () => {
    const names = await toolNames(provider.settings, await mintToken(provider.reader))
    expect(names).toEqual(await toolNames({}, await mintToken({ scope: 'customers:read orders:read' })))
    expect(names).toEqual(['list_orders', 'get_customer'])
  })

  it('an IdP role name the mapping does not list grants nothing, even one spelled like a policy role', async () => {
    expect(await toolNames(provider.settings, await mintToken(provider.unmapped))).toEqual([])
  })
})

describe('audiences', () => {
  it('refuses a token whose only audience is the application id when AUTH_EXTRA_AUDIENCES does not list it', async () => {
    const res = await call({ AUTH_PRESET: 'entra', AUTH_ROLE_MAP: 'Orders.Editor=editor' }, await mintToken({ omit: ['aud'], claims: { aud: ENTRA_APP_ID, azp: 'c44b4083', scp: 'customers:read' } }), 'tools/list')
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"')
  })

  it("refuses an Entra ID token of an app that also signs users in: same issuer, keys and aud, app roles, but no azp", async () => {
    const settings = { AUTH_PRESET: 'entra', AUTH_EXTRA_AUDIENCES: ENTRA_APP_ID, AUTH_ROLE_MAP: 'Orders.Admin=admin' }
    const idToken = await mintToken({ omit: ['aud'], claims: { aud: ENTRA_APP_ID, ver: '2.0', nonce: 'n-0S6_WzA2Mj', roles: ['Orders.Admin'], preferred_username: 'abeli@example.com' } })
    const res = await call(settings, idToken, 'tools/list')
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"')
  })

  it('refuses a Keycloak ID token (typ ID) whose aud an Audience mapper set to the MCP URL', async () => {
    const res = await call({ AUTH_PRESET: 'keycloak', AUTH_ROLE_MAP: 'mcp-editor=editor' }, await mintToken({ claims: { typ: 'ID', realm_access: { roles: ['mcp-editor'] } } }), 'tools/list')
    expect(res.status).toBe(401)
  })

  it('answers 500 naming the setting, never an open door, when groups are read as roles without AUTH_ROLE_MAP', async () => {
    const res = await call({ AUTH_PRESET: 'okta' }, await mintToken({ claims: { groups: ['admin'] } }), 'tools/list')
    expect(res.status).toBe(500)
  })

  it('keeps the protected-resource metadata resource at AUTH_AUDIENCE when extra audiences are accepted', async () => {
    const ctx = createExecutionContext()
    const res = await worker.fetch(new Request('https://bastion.test/.well-known/oauth-protected-resource/mcp'), { ...NATIVE, AUTH_EXTRA_AUDIENCES: ENTRA_APP_ID }, ctx)
    await waitOnExecutionContext(ctx)
    expect(((await res.json()) as { resource: string }).resource).toBe(MCP)
  })
})

describe('opaque tokens by introspection (endpoint stubbed)', () => {
  const INTROSPECTION = {
    AUTH_INTROSPECTION_URL: 'https://issuer-introspect.test/introspect',
    AUTH_INTROSPECTION_CLIENT_ID: 'bastion',
    AUTH_INTROSPECTION_CLIENT_SECRET: 'test-only-secret',
  }
  afterEach(() => vi.restoreAllMocks())

  function stub(answer: (token: string) => Response | Promise<Response>) {
    const calls: string[] = []
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
      expect(String(input instanceof Request ? input.url : input)).toBe(INTROSPECTION.AUTH_INTROSPECTION_URL)
      const token = new URLSearchParams(String(init?.body)).get('token')!
      calls.push(token)
      return answer(token)
    })
    return calls
  }
  const active = (extra: Record<string, unknown> = {}) => Response.json({ active: true, iss: NATIVE.AUTH_ISSUER, aud: MCP, sub: 'opaque-agent', exp: NOW() + 600, scope: 'customers:read orders:read', ...extra })

  it('an introspected role decides tools/list as the native JWT does', async () => {
    const settings = { ...INTROSPECTION, AUTH_INTROSPECTION_RATE: '1000' }
    stub(() => active({ scope: undefined, role: 'editor' }))
    const opaque = await toolNames(settings, `opaque-editor-${crypto.randomUUID()}`)
    vi.restoreAllMocks()
    expect(opaque).toEqual(await toolNames({}, await mintToken({ role: 'editor' })))
  })

  it('a JWT-shaped token still goes the JWT path when a key set is configured', async () => {
    const calls = stub(() => active())
    expect(await toolNames(INTROSPECTION, await mintToken({ role: 'read-only' }))).toContain('search_products')
    expect(calls).toEqual([])
  })

  it('refuses an inactive token with 401 invalid_token', async () => {
    stub(() => Response.json({ active: false }))
    const res = await call(INTROSPECTION, `opaque-revoked-${crypto.randomUUID()}`, 'tools/list')
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"')
  })

  it('answers 503 with Retry-After, never a pass, when the endpoint is down', async () => {
    stub(() => new Response('down', { status: 502 }))
    const res = await call(INTROSPECTION, `opaque-outage-${crypto.randomUUID()}`, 'tools/list')
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(res.headers.get('www-authenticate')).toBeNull()
  })

  it('without a key set, a JWT is introspected too (and refused when the endpoint does not know it)', async () => {
    const calls = stub(() => Response.json({ active: false }))
    const res = await call({ ...INTROSPECTION, AUTH_JWKS: '' }, await mintToken({ role: 'admin' }), 'tools/list')
    expect(res.status).toBe(401)
    expect(calls).toHaveLength(1)
  })
})
