// The remote JWKS cache (src/auth/remote-jwks.ts): how often the issuer is
// asked for its keys, and what a request gets when it cannot be. The issuer
// is a counting fetch function (the e2e test oauth.test.ts runs the same
// against a real authorization server); the clock is a variable, so no test
// depends on how fast this machine is.
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import { createRemoteKeySet, KeysUnavailableError, type RemoteJwksOptions } from '../../src/auth/remote-jwks.ts'
import { parseConfig } from '../../src/config.ts'

const URL_ = new URL('https://issuer.test/jwks')
const COOLDOWN = 30_000
const CACHE = 600_000
const TOKEN = { payload: '', signature: '' }

let keyA: JWK
let keyB: JWK
beforeAll(async () => {
  const a = await generateKeyPair('ES256', { extractable: true })
  const b = await generateKeyPair('ES256', { extractable: true })
  keyA = { ...(await exportJWK(a.publicKey)), kid: 'key-a', alg: 'ES256', use: 'sig' }
  keyB = { ...(await exportJWK(b.publicKey)), kid: 'key-b', alg: 'ES256', use: 'sig' }
})

/** An issuer whose answer the test sets, counting every request. */
function issuer() {
  const state = {
    calls: 0,
    answer: (): Response | Promise<Response> => Response.json({ keys: [keyA] }),
  }
  const fetchFn = (async (_input: RequestInfo | URL, init?: RequestInit) => {
    state.calls++
    // Answer after a macrotask, as a network would, so concurrent callers overlap.
    await new Promise((resolve) => setTimeout(resolve, 5))
    if (init?.signal?.aborted) throw init.signal.reason
    return state.answer()
  }) as typeof fetch
  return { state, fetchFn }
}

function keySet(fetchFn: typeof fetch, clock: { now: number }, extra: Partial<RemoteJwksOptions> = {}) {
  return createRemoteKeySet({ url: URL_, cooldownMs: COOLDOWN, cacheMaxAgeMs: CACHE, timeoutMs: 1000, fetch: fetchFn, now: () => clock.now, pollMs: 1, ...extra })
}

const header = (kid: string) => ({ alg: 'ES256', kid })

describe('remote JWKS cache', () => {
  it('fetches the key set once for 50 concurrent first requests, and all of them verify', async () => {
    const { state, fetchFn } = issuer()
    const keys = keySet(fetchFn, { now: 1_000_000 })
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => keys(header('key-a'), TOKEN)))
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(50)
    expect(state.calls).toBe(1)
  })

  it('asks the issuer at most once per cooldown however many unknown kids arrive, concurrently or not', async () => {
    const { state, fetchFn } = issuer()
    const clock = { now: 1_000_000 }
    const keys = keySet(fetchFn, clock)
    await keys(header('key-a'), TOKEN)
    expect(state.calls).toBe(1)

    // Within the cooldown of that fetch: 100 garbage kids, none refetches.
    const flood = () => Promise.allSettled(Array.from({ length: 100 }, (_, i) => keys(header(`garbage-${i}`), TOKEN)))
    let results = await flood()
    expect(results.every((r) => r.status === 'rejected' && (r.reason as Error).name === 'JWKSNoMatchingKey')).toBe(true)
    expect(state.calls).toBe(1)

    // Cooldown over: the next 100 (at once) cost exactly one fetch, and are still refused.
    clock.now += COOLDOWN
    results = await flood()
    expect(results.every((r) => r.status === 'rejected' && (r.reason as Error).name === 'JWKSNoMatchingKey')).toBe(true)
    expect(state.calls).toBe(2)
    expect(keys.attempts).toBe(2)
  })

  it('finds a key published by a rotation once the cooldown since the last fetch has passed', async () => {
    const { state, fetchFn } = issuer()
    const clock = { now: 1_000_000 }
    const keys = keySet(fetchFn, clock)
    await keys(header('key-a'), TOKEN)
    state.answer = () => Response.json({ keys: [keyB, keyA] })

    await expect(keys(header('key-b'), TOKEN)).rejects.toMatchObject({ name: 'JWKSNoMatchingKey' })
    clock.now += COOLDOWN
    await expect(keys(header('key-b'), TOKEN)).resolves.toBeDefined()
    // The old key is still in the new set.
    await expect(keys(header('key-a'), TOKEN)).resolves.toBeDefined()
    expect(state.calls).toBe(2)
  })

  it('an outage with nothing cached fails every request as KeysUnavailableError and costs the issuer one fetch per cooldown', async () => {
    const { state, fetchFn } = issuer()
    state.answer = () => new Response('down', { status: 503 })
    const clock = { now: 1_000_000 }
    const keys = keySet(fetchFn, clock)

    const results = await Promise.allSettled(Array.from({ length: 40 }, () => keys(header('key-a'), TOKEN)))
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof KeysUnavailableError)).toBe(true)
    expect(String((results[0] as PromiseRejectedResult).reason)).toContain('HTTP 503')
    for (let i = 0; i < 20; i++) await expect(keys(header('key-a'), TOKEN)).rejects.toBeInstanceOf(KeysUnavailableError)
    expect(state.calls).toBe(1)

    // Issuer back, cooldown over: one fetch and the keys verify again.
    state.answer = () => Response.json({ keys: [keyA] })
    clock.now += COOLDOWN
    await expect(keys(header('key-a'), TOKEN)).resolves.toBeDefined()
    expect(state.calls).toBe(2)
  })

  it('keeps verifying with fresh cached keys while the endpoint is down, without asking it', async () => {
    const { state, fetchFn } = issuer()
    const clock = { now: 1_000_000 }
    const keys = keySet(fetchFn, clock)
    await keys(header('key-a'), TOKEN)
    state.answer = () => new Response('down', { status: 503 })
    clock.now += CACHE - 1
    for (let i = 0; i < 10; i++) await expect(keys(header('key-a'), TOKEN)).resolves.toBeDefined()
    expect(state.calls).toBe(1)
  })

  it('does not use stale keys when they cannot be refreshed (fails closed)', async () => {
    const { state, fetchFn } = issuer()
    const clock = { now: 1_000_000 }
    const keys = keySet(fetchFn, clock)
    await keys(header('key-a'), TOKEN)
    state.answer = () => new Response('down', { status: 503 })
    clock.now += CACHE
    await expect(keys(header('key-a'), TOKEN)).rejects.toBeInstanceOf(KeysUnavailableError)
    expect(state.calls).toBe(2)
  })

  it('reports an unknown kid during an outage as unavailable (503), not as an invalid token', async () => {
    const { state, fetchFn } = issuer()
    const clock = { now: 1_000_000 }
    const keys = keySet(fetchFn, clock)
    await keys(header('key-a'), TOKEN)
    state.answer = () => new Response('down', { status: 503 })
    clock.now += COOLDOWN
    await expect(keys(header('key-b'), TOKEN)).rejects.toBeInstanceOf(KeysUnavailableError)
    // Still cooling down from that failed attempt: no new fetch, still unavailable.
    await expect(keys(header('key-b'), TOKEN)).rejects.toBeInstanceOf(KeysUnavailableError)
    expect(state.calls).toBe(2)
    // The cached key is unaffected.
    await expect(keys(header('key-a'), TOKEN)).resolves.toBeDefined()
  })

  it('gives up on a hanging endpoint after the timeout, as KeysUnavailableError', async () => {
    let calls = 0
    const hanging = ((_input: RequestInfo | URL, init?: RequestInit) => {
      calls++
      return new Promise<Response>((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)))
    }) as typeof fetch
    const keys = createRemoteKeySet({ url: URL_, cooldownMs: COOLDOWN, cacheMaxAgeMs: CACHE, timeoutMs: 50, fetch: hanging, pollMs: 1 })
    const results = await Promise.allSettled([keys(header('key-a'), TOKEN), keys(header('key-a'), TOKEN)])
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof KeysUnavailableError)).toBe(true)
    expect(calls).toBe(1)
  })

  it.each([
    ['a redirect (not followed)', () => new Response(null, { status: 302, headers: { location: 'https://evil.test/jwks' } }), 'HTTP 302'],
    ['a body that is not JSON', () => new Response('<html>', { status: 200 }), 'not JSON'],
    ['JSON that is not a key set', () => Response.json({ hello: 'world' }), 'not a JWK set'],
  ])('refuses %s from the endpoint as KeysUnavailableError', async (_name, answer, reason) => {
    const { state, fetchFn } = issuer()
    state.answer = answer
    const keys = keySet(fetchFn, { now: 1_000_000 })
    const error = await Promise.resolve(keys(header('key-a'), TOKEN)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(KeysUnavailableError)
    expect(String(error)).toContain(reason)
  })

  it('refuses options that would let unknown kids hammer the issuer', () => {
    const { fetchFn } = issuer()
    expect(() => createRemoteKeySet({ url: URL_, cooldownMs: 0, cacheMaxAgeMs: CACHE, timeoutMs: 1000, fetch: fetchFn })).toThrow(/cooldownMs/)
    expect(() => createRemoteKeySet({ url: URL_, cooldownMs: COOLDOWN, cacheMaxAgeMs: 1, timeoutMs: 1000, fetch: fetchFn })).toThrow(/cacheMaxAgeMs/)
  })
})

describe('AUTH_JWKS_COOLDOWN_SECONDS and AUTH_JWKS_CACHE_SECONDS', () => {
  const remote = (extra: Record<string, string> = {}) =>
    parseConfig({ AUTH_ISSUER: 'https://issuer.test', AUTH_AUDIENCE: 'https://bastion.test/mcp', AUTH_JWKS_URL: 'https://issuer.test/jwks', ...extra })

  it('default to a 30 s cooldown and a 600 s cache', () => {
    const result = remote()
    expect(result.ok && result.config.jwks).toMatchObject({ kind: 'remote', cooldownSeconds: 30, cacheSeconds: 600 })
  })

  it('take explicit values', () => {
    const result = remote({ AUTH_JWKS_COOLDOWN_SECONDS: '2', AUTH_JWKS_CACHE_SECONDS: '60' })
    expect(result.ok && result.config.jwks).toMatchObject({ kind: 'remote', cooldownSeconds: 2, cacheSeconds: 60 })
  })

  it.each([
    [{ AUTH_JWKS_COOLDOWN_SECONDS: '0' }, 'AUTH_JWKS_COOLDOWN_SECONDS'],
    [{ AUTH_JWKS_COOLDOWN_SECONDS: '-5' }, 'AUTH_JWKS_COOLDOWN_SECONDS'],
    [{ AUTH_JWKS_COOLDOWN_SECONDS: '1.5' }, 'AUTH_JWKS_COOLDOWN_SECONDS'],
    [{ AUTH_JWKS_CACHE_SECONDS: 'ten' }, 'AUTH_JWKS_CACHE_SECONDS'],
    [{ AUTH_JWKS_COOLDOWN_SECONDS: '120', AUTH_JWKS_CACHE_SECONDS: '60' }, 'AUTH_JWKS_CACHE_SECONDS'],
  ])('refuse %o, naming %s (a zero cooldown would refetch for every unknown kid)', (extra, setting) => {
    expect(remote(extra)).toMatchObject({ ok: false, setting })
  })
})
