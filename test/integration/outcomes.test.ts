// The "Outcomes on the wire" table of INTERFACE.md, row by row, against the
// whole Worker: status, headers and JSON-RPC body of every refusal.
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { describe, expect, it, vi } from 'vitest'
import worker from '../../src/index.ts'
import { mintToken } from '../support/tokens.ts'
import { callWorker, connectClient, MCP_URL, rpc, rpcBody } from '../support/worker.ts'
import { testEnv } from '../support/test-env.ts'
import { effectiveScopes } from '../../src/policy/decide.ts'
import { POLICY } from '../../src/policy/policy.ts'

const PRM = 'https://bastion.test/.well-known/oauth-protected-resource/mcp'
/** The 401 challenge's scopes (policy.ts startScopes): the scopes every role grants. Written out, not derived. */
const START = 'customers:read orders:read'
/** The DPoP challenge beside Bearer on every 401 (AUTH_DPOP=allowed, the default). */
const DPOP = 'DPoP algs="ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA Ed25519"'

/** The auth-params of a single-challenge WWW-Authenticate value (quoted-string values). */
function challengeParams(header: string): { scheme: string; params: Record<string, string> } {
  const [, scheme, rest] = header.match(/^(\S+)\s+(.*)$/)!
  const params: Record<string, string> = {}
  for (const m of rest!.matchAll(/([\w-]+)="((?:[^"\\]|\\.)*)"\s*(?:,\s*|$)/g)) {
    expect(params[m[1]!], `auth-param ${m[1]} repeated`).toBeUndefined()
    params[m[1]!] = m[2]!
  }
  // Everything after the scheme is auth-params: no second challenge hides in it.
  expect(rest!.replace(/([\w-]+)="((?:[^"\\]|\\.)*)"\s*(?:,\s*|$)/g, '')).toBe('')
  return { scheme: scheme!, params }
}

async function errorOf(res: Response) {
  const body = await rpcBody(res)
  return body as { jsonrpc: string; id: unknown; error: { code: number; message: string; data?: Record<string, unknown> } }
}

describe('authentication (401)', () => {
  it('challenges a request without a token, without error="invalid_token"', async () => {
    const res = await callWorker(MCP_URL(), { method: 'POST' })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${PRM}", scope="${START}", ${DPOP}`)
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('names in the 401 only scopes every role grants, never offline_access (a least-privileged client can obtain them)', async () => {
    const res = await callWorker(MCP_URL(), { method: 'POST' })
    const bearer = res.headers.get('www-authenticate')!.replace(`, ${DPOP}`, '')
    const scopes = challengeParams(bearer).params['scope']!.split(' ')
    expect(scopes).not.toContain('offline_access')
    for (const role of ['read-only', 'editor', 'admin']) {
      const granted = effectiveScopes(POLICY, { scopes: [], roles: [role] })
      for (const scope of scopes) expect(granted.has(scope), `${role} grants ${scope}`).toBe(true)
    }
  })

  it('gives a client holding exactly the 401 scopes a working session: it lists and calls its tools', async () => {
    const client = await connectClient({ scope: START })
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name).sort()).toEqual(['get_customer', 'list_orders'])
    const result = await client.callTool({ name: 'list_orders', arguments: {} })
    expect(result.isError).not.toBe(true)
    await client.close()
  })

  it('answers an invalid token with error="invalid_token" and no reason', async () => {
    const res = await rpc('tools/list', {}, { token: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln' })
    expect(res.status).toBe(401)
    // The whole challenge: the generic description only, no reason (unknown key, bad signature …).
    expect(res.headers.get('www-authenticate')).toBe(`Bearer error="invalid_token", error_description="invalid token", resource_metadata="${PRM}", scope="${START}", ${DPOP}`)
    const body = await errorOf(res)
    expect(body.error.message).toBe('invalid token')
    expect(body.error.code).toBe(-32001)
    // `data` carries the request id and nothing else: no failure code or detail.
    expect(body.error.data).toEqual({ requestId: res.headers.get('x-request-id') })
  })

  it('refuses an expired token', async () => {
    const res = await rpc('tools/list', {}, { token: await mintToken({ role: 'admin', ttl: -120 }) })
    expect(res.status).toBe(401)
  })

  it('refuses a token for another audience', async () => {
    const res = await rpc('tools/list', {}, { token: await mintToken({ role: 'admin', claims: { aud: 'https://other.test/mcp' }, omit: ['aud'] }) })
    expect(res.status).toBe(401)
  })

  it('ignores a token passed in the query string', async () => {
    const token = await mintToken({ role: 'admin' })
    const res = await callWorker(`${MCP_URL()}?access_token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    })
    expect(res.status).toBe(401)
  })

  it('ignores a token passed in the body', async () => {
    const token = await mintToken({ role: 'admin' })
    const res = await callWorker(MCP_URL(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { authToken: token } }, access_token: token }),
    })
    expect(res.status).toBe(401)
  })

  it('does not accept a non-Bearer scheme', async () => {
    const token = await mintToken({ role: 'admin' })
    const res = await callWorker(MCP_URL(), { method: 'POST', headers: { authorization: `Basic ${token}` } })
    expect(res.status).toBe(401)
  })
})

describe('authorization (403 step-up)', () => {
  it('refuses editor calling search with 403 naming search:read', async () => {
    const res = await rpc('tools/call', { name: 'search', arguments: { query: 'keyboard' } }, { token: await mintToken({ role: 'editor' }), id: 7 })
    expect(res.status).toBe(403)
    const challenge = res.headers.get('www-authenticate')!
    expect(challenge).toMatch(/^Bearer error="insufficient_scope", scope="search:read", resource_metadata="[^"]+"/)
    expect(challenge).toContain(`resource_metadata="${PRM}"`)
    const body = await errorOf(res)
    expect(body.id).toBe(7)
    expect(body.error.message).toContain('search:read')
  })

  it('refuses read-only calling update_order with 403 naming orders:write, before the tool runs', async () => {
    const before = await env.DB.prepare("SELECT status FROM orders WHERE id = 'ord_0001'").first<{ status: string }>()
    const res = await rpc('tools/call', { name: 'update_order', arguments: { orderId: 'ord_0001', status: 'cancelled' } }, { token: await mintToken({ role: 'read-only' }) })
    expect(res.status).toBe(403)
    expect(res.headers.get('www-authenticate')).toContain('scope="orders:write"')
    const after = await env.DB.prepare("SELECT status FROM orders WHERE id = 'ord_0001'").first<{ status: string }>()
    expect(after).toEqual(before)
  })

  it('names every scope the call needs in one challenge, never offline_access, and the stepped-up token succeeds', async () => {
    // A least-privileged client (the start scopes) calls search: one Bearer challenge naming search:read.
    const res = await rpc('tools/call', { name: 'search', arguments: { query: 'keyboard' } }, { token: await mintToken({ scope: START }) })
    expect(res.status).toBe(403)
    const { scheme, params } = challengeParams(res.headers.get('www-authenticate')!)
    expect(scheme).toBe('Bearer')
    expect(params).toMatchObject({ error: 'insufficient_scope', scope: 'search:read', resource_metadata: PRM })
    expect(params['scope']!.split(' ')).not.toContain('offline_access')
    // Step-up: the client asks for what it held plus what the challenge named.
    const stepped = await rpc('tools/call', { name: 'search', arguments: { query: 'keyboard' } }, { token: await mintToken({ scope: `${START} ${params['scope']}` }) })
    expect(stepped.status).toBe(200)
    expect((await rpcBody(stepped))['result']).toBeDefined()
  })

  it('refuses a token whose scope claim is "*"', async () => {
    const res = await rpc('tools/call', { name: 'get_customer', arguments: { customerId: 'cus_001' } }, { token: await mintToken({ scope: '*' }) })
    expect(res.status).toBe(403)
  })

  it('answers an unknown tool with JSON-RPC invalid params, not 403', async () => {
    const res = await rpc('tools/call', { name: 'drop_database', arguments: {} }, { token: await mintToken({ role: 'admin' }) })
    expect(res.status).toBe(200)
    const body = await errorOf(res)
    expect(body.error.code).toBe(-32602)
  })

  it.each([
    ['read-only', ['get_customer', 'list_orders', 'search_products']],
    ['editor', ['get_customer', 'list_orders', 'update_order', 'create_ticket']],
    ['admin', ['get_customer', 'list_orders', 'search_products', 'update_order', 'create_ticket', 'search', 'execute_query']],
    ['nobody', []],
  ])('tools/list for %s lists exactly the tools the policy grants', async (role, expected) => {
    for (const era of ['modern', 'legacy'] as const) {
      const client = await connectClient({ role }, era)
      const { tools } = await client.listTools()
      expect(tools.map((t) => t.name).sort()).toEqual([...expected].sort())
      await client.close()
    }
  })

  it('grants a scope-only token exactly its scopes', async () => {
    const client = await connectClient({ scope: 'search:read products:read' })
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name).sort()).toEqual(['search', 'search_products'])
    await client.close()
  })
})

describe('transport checks', () => {
  it('refuses an Origin that is not allowed with 403', async () => {
    const res = await rpc('tools/list', {}, { token: await mintToken({ role: 'admin' }), headers: { origin: 'https://evil.example' } })
    expect(res.status).toBe(403)
    expect((await errorOf(res)).error.message).toBe('origin not allowed')
  })

  it('refuses the opaque Origin "null" with 403', async () => {
    const res = await rpc('tools/list', {}, { token: await mintToken({ role: 'admin' }), headers: { origin: 'null' } })
    expect(res.status).toBe(403)
  })

  it('refuses a bad Origin before authentication', async () => {
    const res = await callWorker(MCP_URL(), { method: 'POST', headers: { origin: 'http://localhost:1234' } })
    expect(res.status).toBe(403)
  })

  it('serves the server\'s own origin (from AUTH_AUDIENCE) without listing it', async () => {
    const res = await rpc('ping', {}, { token: await mintToken({ role: 'admin' }), headers: { origin: 'https://bastion.test' } })
    expect(res.status).toBe(200)
  })

  it('does not derive the own origin from the Host header (DNS rebinding: https Origin and Host agree on evil.example)', async () => {
    // same scheme as the server's own origin, so a server trusting Host would take it for itself
    const res = await rpc('ping', {}, { token: await mintToken({ role: 'admin' }), headers: { origin: 'https://evil.example', host: 'evil.example' } })
    expect(res.status).toBe(403)
    expect((await errorOf(res)).error.message).toBe('origin not allowed')
  })

  it('does not derive the own origin from the request URL either (a rebound name reaching the Worker as https://evil.example/mcp)', async () => {
    const token = await mintToken({ role: 'admin' })
    const res = await callWorker('https://evil.example/mcp', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}`, origin: 'https://evil.example', host: 'evil.example' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    })
    expect(res.status).toBe(403)
    expect((await errorOf(res)).error.message).toBe('origin not allowed')
  })

  it.each([
    ['text/plain', 'text/plain'],
    ['form-encoded (a CORS-simple type a browser sends without preflight)', 'application/x-www-form-urlencoded'],
    ['multipart', 'multipart/form-data; boundary=x'],
    ['a JSON look-alike', 'application/json-seq'],
  ])('answers a %s Content-Type with 415 and a JSON-RPC error, even with a valid token and JSON body', async (_name, type) => {
    const res = await callWorker(MCP_URL(), {
      method: 'POST',
      headers: { 'content-type': type, accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${await mintToken({ role: 'admin' })}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
    })
    expect(res.status).toBe(415)
    expect(res.headers.get('x-request-id')).toBeTruthy()
    const body = await errorOf(res)
    expect(body).toMatchObject({ jsonrpc: '2.0', id: 7, error: { code: -32600, message: 'content-type must be application/json' } })
  })

  it('accepts application/json with a charset parameter and in another case (the 415 check is not over-strict)', async () => {
    const res = await callWorker(MCP_URL(), {
      method: 'POST',
      headers: { 'content-type': 'Application/JSON; charset=utf-8', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${await mintToken({ role: 'admin' })}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'ping' }),
    })
    expect(res.status).toBe(200)
  })

  it('serves an allowed Origin', async () => {
    const res = await rpc('ping', {}, { token: await mintToken({ role: 'admin' }), headers: { origin: 'https://allowed.example' } })
    expect(res.status).toBe(200)
  })

  it('answers an unsupported MCP-Protocol-Version with 400', async () => {
    const res = await rpc('tools/list', {}, { token: await mintToken({ role: 'admin' }), headers: { 'mcp-protocol-version': '1999-01-01' } })
    expect(res.status).toBe(400)
    expect((await errorOf(res)).error).toBeDefined()
  })

  it('answers an Mcp-Method header that disagrees with the body with 400', async () => {
    const res = await rpc('tools/list', {}, { token: await mintToken({ role: 'admin' }), headers: { 'mcp-method': 'tools/call' } })
    expect(res.status).toBe(400)
    expect((await errorOf(res)).error.code).toBe(-32020)
  })

  it('answers an Mcp-Name header that disagrees with the tool name with 400', async () => {
    const res = await rpc('tools/call', { name: 'get_customer', arguments: { customerId: 'cus_001' } }, { token: await mintToken({ role: 'admin' }), headers: { 'mcp-name': 'execute_query' } })
    expect(res.status).toBe(400)
    expect((await errorOf(res)).error.code).toBe(-32020)
  })

  it('accepts a base64-sentinel Mcp-Name that matches the body', async () => {
    const res = await rpc('tools/call', { name: 'get_customer', arguments: { customerId: 'cus_001' } }, { token: await mintToken({ role: 'admin' }), headers: { 'mcp-name': `=?base64?${btoa('get_customer')}?=` } })
    expect(res.status).toBe(200)
  })

  it.each([
    ['not JSON', '{"jsonrpc": "2.0", "id": 1, "method": ', -32700],
    ['a JSON string', '"hello"', -32600],
    ['a batch', '[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600],
    ['jsonrpc 1.0', '{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600],
    ['params as an array', '{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}', -32600],
    ['no method', '{"jsonrpc":"2.0","id":1}', -32600],
  ])('answers a body that is %s with 400 and the right JSON-RPC code', async (_name, body, code) => {
    const res = await callWorker(MCP_URL(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await mintToken({ role: 'admin' })}` },
      body,
    })
    expect(res.status).toBe(400)
    expect((await errorOf(res)).error.code).toBe(code)
  })

  it('refuses a declared Content-Length over the cap with 413', async () => {
    const res = await callWorker(MCP_URL(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(10 * 1024 * 1024) },
      body: 'x'.repeat(10),
    })
    expect([413]).toContain(res.status)
  })

  it('refuses a streamed body over the cap with 413 without trusting Content-Length', async () => {
    let sent = 0
    const chunk = new Uint8Array(64 * 1024).fill(0x20)
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 2 * 1024 * 1024) return controller.close()
        sent += chunk.byteLength
        controller.enqueue(chunk)
      },
    })
    const res = await callWorker(MCP_URL(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await mintToken({ role: 'admin' })}` },
      body: stream,
      // @ts-expect-error duplex is required for streamed request bodies
      duplex: 'half',
    })
    expect(res.status).toBe(413)
    expect(sent).toBeLessThan(2 * 1024 * 1024)
  })

  it.each(['GET', 'DELETE'])('answers %s /mcp with 405 and Allow: POST', async (method) => {
    const res = await callWorker(MCP_URL(), { method })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('POST')
    expect(res.headers.get('x-request-id')).toBeTruthy()
  })
})

describe('methods the server does not serve', () => {
  it('refuses subscriptions/listen (no long-lived streams for notifications it never sends)', async () => {
    const res = await rpc('subscriptions/listen', { notifications: { toolsListChanged: true } }, { token: await mintToken({ role: 'admin' }), id: 9 })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('application/json')
    const body = await errorOf(res)
    expect(body).toMatchObject({ id: 9, error: { code: -32601 } })
  })
})

describe('identity provider outage', () => {
  it('answers 503 with Retry-After, not 401, when the remote JWKS cannot be fetched', async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockImplementation(async () => new Response('down', { status: 503 }))
    try {
      const ctx = createExecutionContext()
      const outage = { ...testEnv(env), AUTH_JWKS: '', AUTH_JWKS_URL: 'https://issuer-outage.test/jwks.json' }
      const req = new Request('https://bastion.test/mcp', {
        method: 'POST',
        headers: { authorization: `Bearer ${await mintToken({ role: 'admin' })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
      })
      const res = await worker.fetch(req, outage, ctx)
      await waitOnExecutionContext(ctx)
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBe('30')
      expect(res.headers.get('www-authenticate')).toBeNull()
    } finally {
      fetchSpy.mockRestore()
    }
  })
})

describe('CORS for browser clients', () => {
  it('answers a preflight from an allowed origin with the MCP headers allowed', async () => {
    const res = await callWorker(MCP_URL(), { method: 'OPTIONS', headers: { origin: 'https://allowed.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } })
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe('https://allowed.example')
    expect(res.headers.get('access-control-allow-headers')).toContain('authorization')
    expect(res.headers.get('access-control-allow-headers')).toContain('mcp-protocol-version')
    expect(res.headers.get('access-control-allow-credentials')).toBeNull()
  })

  it('refuses a preflight from an origin that is not allowed', async () => {
    const res = await callWorker(MCP_URL(), { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
    expect(res.status).toBe(403)
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('lets an allowed browser origin read the 401 challenge', async () => {
    const res = await callWorker(MCP_URL(), { method: 'POST', headers: { origin: 'https://allowed.example' } })
    expect(res.status).toBe(401)
    expect(res.headers.get('access-control-allow-origin')).toBe('https://allowed.example')
    expect(res.headers.get('access-control-expose-headers')).toContain('www-authenticate')
  })
})

describe('public endpoints', () => {
  it.each(['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource'])('serves the PRM document at %s', async (path) => {
    const res = await callWorker(`https://bastion.test${path}`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      resource: 'https://bastion.test/mcp',
      authorization_servers: ['https://issuer.test'],
      scopes_supported: ['customers:read', 'orders:read', 'products:read', 'orders:write', 'tickets:write', 'search:read', 'sql:read'],
      bearer_methods_supported: ['header'],
      resource_name: 'mcp-bastion',
      dpop_signing_alg_values_supported: ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA', 'Ed25519'],
    })
  })

  it('serves /healthz without auth and without internals', async () => {
    const res = await callWorker('https://bastion.test/healthz')
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ ok: true })
  })
})

describe('configuration fails closed', () => {
  it.each([
    ['AUTH_JWKS is not JSON', { AUTH_JWKS: '{nope' }, 'AUTH_JWKS'],
    ['AUTH_ISSUER is missing', { AUTH_ISSUER: '' }, 'AUTH_ISSUER'],
    ['AUTH_ALGORITHMS allows HS256', { AUTH_ALGORITHMS: 'RS256,HS256' }, 'AUTH_ALGORITHMS'],
    ['both JWKS settings are set', { AUTH_JWKS_URL: 'https://issuer.test/jwks.json' }, 'AUTH_JWKS_URL'],
  ])('answers every request with 500 when %s, naming the setting only in the log', async (_name, override, setting) => {
    const logs: string[] = []
    const original = console.error
    console.error = (line: string) => logs.push(line)
    try {
      const ctx = createExecutionContext()
      const badEnv = { ...testEnv(env), ...override }
      for (const path of ['/mcp', '/healthz']) {
        const res = await worker.fetch(new Request(`https://bastion.test${path}`, { method: path === '/mcp' ? 'POST' : 'GET' }), badEnv, ctx)
        expect(res.status).toBe(500)
        const text = await res.text()
        expect(text).toContain('server misconfigured')
        expect(text).not.toContain(setting)
      }
      await waitOnExecutionContext(ctx)
    } finally {
      console.error = original
    }
    expect(logs.some((l) => l.includes('config_invalid') && l.includes(setting))).toBe(true)
  })
})
