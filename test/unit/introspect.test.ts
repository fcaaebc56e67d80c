// Opaque-token introspection (src/auth/introspect.ts): what an answer of the
// endpoint means, how often the endpoint is asked, and what a request gets
// when it cannot be. The endpoint is a counting fetch function (the e2e test
// introspection.test.ts runs the same against a real oidc-provider); the
// clock is a variable, so no test depends on how fast this machine is.
import { describe, expect, it } from 'vitest'
import { createIntrospectionVerifier, type IntrospectionOptions } from '../../src/auth/introspect.ts'
import type { VerifyResult } from '../../src/auth/token.ts'

const ISSUER = 'https://issuer.test'
const AUDIENCE = 'https://bastion.test/mcp'
const T0 = 1_800_000_000_000

/** An endpoint whose answer the test sets per token, counting every request. */
function endpoint() {
  const state = {
    calls: 0,
    bodies: [] as URLSearchParams[],
    headers: [] as Headers[],
    answer: (token: string): Response | Promise<Response> => Response.json(active(token)),
  }
  const fetchFn = (async (_input: RequestInfo | URL, init?: RequestInit) => {
    state.calls++
    const body = new URLSearchParams(String(init?.body))
    state.bodies.push(body)
    state.headers.push(new Headers(init?.headers))
    // Answer after a macrotask, as a network would, so concurrent callers overlap.
    await new Promise((resolve) => setTimeout(resolve, 5))
    if (init?.signal?.aborted) throw init.signal.reason
    return state.answer(body.get('token')!)
  }) as typeof fetch
  return { state, fetchFn }
}

let clock = T0
const seconds = () => Math.floor(clock / 1000)

function active(token: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { active: true, iss: ISSUER, aud: AUDIENCE, sub: `user-${token.slice(0, 6)}`, exp: seconds() + 600, iat: seconds(), scope: 'customers:read orders:read', client_id: 'agent', token_type: 'Bearer', ...extra }
}

function verifier(fetchFn: typeof fetch, overrides: Partial<IntrospectionOptions> = {}) {
  clock = T0
  return createIntrospectionVerifier({
    url: new URL('https://issuer.test/introspect'),
    clientId: 'bastion rs',
    clientSecret: 'p@ss:word',
    issuer: ISSUER,
    audiences: [AUDIENCE, 'api://bastion'],
    mapping: { scopeClaims: [['scope']], roleClaims: [['role']], roleMap: undefined, preset: 'native' as const },
    cacheSeconds: 60,
    timeoutMs: 1000,
    ratePerSecond: 5,
    fetch: fetchFn,
    now: () => clock,
    pollMs: 1,
    ...overrides,
  })
}

const code = (r: VerifyResult) => (r.ok ? 'ok' : r.code)

describe('introspection request', () => {
  it('authenticates with client_secret_basic (form-encoded parts) and sends the token with an access_token hint', async () => {
    const { state, fetchFn } = endpoint()
    await verifier(fetchFn)('opaque-token-1')
    expect(state.headers[0]!.get('authorization')).toBe(`Basic ${btoa('bastion+rs:p%40ss%3Aword')}`)
    expect(state.headers[0]!.get('content-type')).toBe('application/x-www-form-urlencoded')
    expect(Object.fromEntries(state.bodies[0]!)).toEqual({ token: 'opaque-token-1', token_type_hint: 'access_token' })
  })

  it('never sends something that is not an RFC 6750 token to the endpoint', async () => {
    const { state, fetchFn } = endpoint()
    expect(code(await verifier(fetchFn)('a token with spaces'))).toBe('malformed')
    expect(state.calls).toBe(0)
  })
})

describe('an active token', () => {
  it('yields the subject, scopes, roles and client of the answer', async () => {
    const { state, fetchFn } = endpoint()
    state.answer = (t) => Response.json(active(t, { role: 'editor', jti: 'at-1' }))
    expect(await verifier(fetchFn)('opaque-token-2')).toMatchObject({
      ok: true,
      token: { sub: 'user-opaque', scopes: ['customers:read', 'orders:read'], roles: ['editor'], clientId: 'agent', tokenId: 'at-1', jkt: undefined },
    })
  })

  it('acts as its client_id when a client-credentials token has no sub', async () => {
    const { state, fetchFn } = endpoint()
    state.answer = (t) => Response.json(active(t, { sub: undefined, client_id: 'agent-reader' }))
    expect(await verifier(fetchFn)('opaque-cc')).toMatchObject({ ok: true, token: { sub: 'agent-reader' } })
  })

  it('keeps the DPoP binding (cnf.jkt) of a bound token', async () => {
    const { state, fetchFn } = endpoint()
    const jkt = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs'
    state.answer = (t) => Response.json(active(t, { cnf: { jkt }, token_type: 'DPoP' }))
    expect(await verifier(fetchFn)('opaque-dpop')).toMatchObject({ ok: true, token: { jkt } })
  })

  it('uses a digest, never the token, as the token id when there is no jti', async () => {
    const { fetchFn } = endpoint()
    const result = await verifier(fetchFn)('opaque-no-jti')
    expect(result.ok && result.token.tokenId).toMatch(/^sha256:[0-9a-f]{16}$/)
  })
})

describe('refusals the endpoint decides', () => {
  it.each([
    ['an inactive (revoked or unknown) token', { active: false } as Record<string, unknown>, 'inactive'],
    ['an answer without exp', { exp: undefined }, 'missing_claim'],
    ['an expired token', { exp: Math.floor(T0 / 1000) - 60 }, 'expired'],
    ['a token not valid yet', { nbf: Math.floor(T0 / 1000) + 600 }, 'not_yet_valid'],
    ['an answer without iss', { iss: undefined }, 'missing_claim'],
    ['another issuer', { iss: 'https://evil.test' }, 'wrong_issuer'],
    ['an answer without aud', { aud: undefined }, 'missing_claim'],
    ['a token for another resource', { aud: ['https://other.test/mcp'] }, 'wrong_audience'],
    ['a refresh token', { token_type: 'refresh_token' }, 'invalid_claim'],
    ['a token type other than Bearer or DPoP', { token_type: 'urn:ietf:params:oauth:token-type:id_token' }, 'invalid_claim'],
    ['token_type DPoP without cnf.jkt', { token_type: 'DPoP' }, 'invalid_claim'],
    ['a Keycloak refresh token (typ Refresh)', { token_type: undefined, typ: 'Refresh' }, 'invalid_claim'],
    ['a null sub (not a client-credentials token without one)', { sub: null }, 'invalid_claim'],
    ['an nbf that is not a number', { nbf: 'soon' }, 'invalid_claim'],
    ['a token bound some other way than DPoP', { cnf: { 'x5t#S256': 'abc' } }, 'invalid_claim'],
    ['a scope that is a number', { scope: 5 }, 'invalid_claim'],
  ])('refuses %s', async (_name, extra, expected) => {
    const { state, fetchFn } = endpoint()
    state.answer = (t) => Response.json(extra.active === false ? { active: false } : active(t, extra))
    expect(code(await verifier(fetchFn)('opaque-refused'))).toBe(expected)
  })

  it('accepts an extra audience (an array aud naming AUTH_EXTRA_AUDIENCES)', async () => {
    const { state, fetchFn } = endpoint()
    state.answer = (t) => Response.json(active(t, { aud: ['api://bastion', 'https://graph.test'] }))
    expect(code(await verifier(fetchFn)('opaque-extra-aud'))).toBe('ok')
  })
})

describe('outages fail closed and are not cached', () => {
  it.each([
    ['an HTTP error', () => new Response('down', { status: 503 })],
    ['a redirect', () => new Response(null, { status: 302, headers: { location: 'https://elsewhere.test' } })],
    ['a body that is not JSON', () => new Response('<html>', { status: 200 })],
    ['JSON without a boolean active', () => Response.json({ active: 'true' })],
    ['a body announced over 64 KiB', () => new Response('{}', { status: 200, headers: { 'content-length': '70000' } })],
    ['a network failure', () => Promise.reject(new TypeError('connection refused'))],
  ])('answers introspection_unavailable for %s, then asks again', async (_name, answer) => {
    const { state, fetchFn } = endpoint()
    state.answer = answer
    const verify = verifier(fetchFn)
    expect(code(await verify('opaque-outage'))).toBe('introspection_unavailable')
    state.answer = (t) => Response.json(active(t))
    expect(code(await verify('opaque-outage'))).toBe('ok')
    expect(state.calls).toBe(2)
  })

  it('gives up after timeoutMs on an endpoint that does not answer', async () => {
    const fetchFn = ((_input: RequestInfo | URL, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)))) as typeof fetch
    expect(await verifier(fetchFn, { timeoutMs: 20 })('opaque-hang')).toMatchObject({ ok: false, code: 'introspection_unavailable', detail: expect.stringMatching(/TimeoutError/) })
  })
})

describe('cache', () => {
  it('asks the endpoint once per token within the TTL', async () => {
    const { state, fetchFn } = endpoint()
    const verify = verifier(fetchFn)
    for (let i = 0; i < 5; i++) expect(code(await verify('opaque-cached'))).toBe('ok')
    clock += 59_000
    expect(code(await verify('opaque-cached'))).toBe('ok')
    expect(state.calls).toBe(1)
    clock += 2_000
    await verify('opaque-cached')
    expect(state.calls).toBe(2)
  })

  it('keeps an active result no longer than the token lives', async () => {
    const { state, fetchFn } = endpoint()
    state.answer = (t) => Response.json(active(t, { exp: seconds() + 10 }))
    const verify = verifier(fetchFn)
    await verify('opaque-short')
    clock += 11_000
    state.answer = () => Response.json({ active: false })
    expect(code(await verify('opaque-short'))).toBe('inactive')
    expect(state.calls).toBe(2)
  })

  it('caches a refusal, so a revoked token sent again costs no request', async () => {
    const { state, fetchFn } = endpoint()
    state.answer = () => Response.json({ active: false })
    const verify = verifier(fetchFn)
    for (let i = 0; i < 3; i++) expect(code(await verify('opaque-revoked'))).toBe('inactive')
    expect(state.calls).toBe(1)
  })

  it('keeps at most maxEntries results, dropping the oldest', async () => {
    const { state, fetchFn } = endpoint()
    const verify = verifier(fetchFn, { maxEntries: 2, ratePerSecond: 100 })
    for (const t of ['tok-a', 'tok-b', 'tok-c']) await verify(t)
    await verify('tok-c')
    await verify('tok-b')
    expect(state.calls).toBe(3)
    await verify('tok-a')
    expect(state.calls).toBe(4)
  })

  it('twenty concurrent requests with one new token make one introspection', async () => {
    const { state, fetchFn } = endpoint()
    const verify = verifier(fetchFn)
    const results = await Promise.all(Array.from({ length: 20 }, () => verify('opaque-burst')))
    expect(results.map(code)).toEqual(Array(20).fill('ok'))
    expect(state.calls).toBe(1)
  })
})

describe('introspection rate', () => {
  it('100 distinct made-up tokens at once cost at most the rate; the rest are introspection_busy', async () => {
    const { state, fetchFn } = endpoint()
    state.answer = () => Response.json({ active: false })
    const verify = verifier(fetchFn, { ratePerSecond: 5 })
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => verify(`made-up-${i}`)))
    expect(state.calls).toBe(5)
    expect(results.filter((r) => code(r) === 'inactive')).toHaveLength(5)
    expect(results.filter((r) => code(r) === 'introspection_busy')).toHaveLength(95)
  })

  it('refills at the rate: one more introspection per 1/rate seconds', async () => {
    const { state, fetchFn } = endpoint()
    const verify = verifier(fetchFn, { ratePerSecond: 5 })
    for (let i = 0; i < 5; i++) await verify(`fill-${i}`)
    expect(code(await verify('fill-5'))).toBe('introspection_busy')
    clock += 200
    expect(code(await verify('fill-6'))).toBe('ok')
    expect(code(await verify('fill-7'))).toBe('introspection_busy')
    expect(state.calls).toBe(6)
  })

  it('a flood of made-up tokens does not lock out a token already accepted once its cache time is over', async () => {
    const { state, fetchFn } = endpoint()
    state.answer = (t) => Response.json(t === 'known-agent' ? active(t) : { active: false })
    const verify = verifier(fetchFn, { ratePerSecond: 5, cacheSeconds: 10 })
    expect(code(await verify('known-agent'))).toBe('ok')
    clock += 11_000
    await Promise.all(Array.from({ length: 50 }, (_, i) => verify(`flood-${i}`)))
    expect(code(await verify('made-up-after-flood'))).toBe('introspection_busy')
    expect(code(await verify('known-agent'))).toBe('ok')
    expect(state.calls).toBe(1 + 5 + 1)
  })

  it('refusals never push an accepted token out of the cache', async () => {
    const { state, fetchFn } = endpoint()
    state.answer = (t) => Response.json(t === 'kept' ? active(t) : { active: false })
    const verify = verifier(fetchFn, { maxEntries: 3, ratePerSecond: 100 })
    await verify('kept')
    for (let i = 0; i < 10; i++) await verify(`refused-${i}`)
    const before = state.calls
    expect(code(await verify('kept'))).toBe('ok')
    expect(state.calls).toBe(before)
  })

  it('a cached token is answered whatever the rate', async () => {
    const { fetchFn } = endpoint()
    const verify = verifier(fetchFn, { ratePerSecond: 1 })
    await verify('known')
    expect(code(await verify('other'))).toBe('introspection_busy')
    expect(code(await verify('known'))).toBe('ok')
  })
})
