// DPoP proof verification (src/auth/dpop.ts): valid proofs of every key type
// pass; each malformed or forged proof is refused for the right reason (the
// stable `code`). Proofs are made here with jose, the way a client would; the
// replay store is the in-memory reference of the ReplayStore contract (the
// Durable Object behind it in the Worker is tested in test/integration/dpop.test.ts).
import { beforeAll, describe, expect, it } from 'vitest'
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'
import { accessTokenHash, createDpopVerifier, normalizeHtu, type DpopFailureCode, type DpopRequest, type ReplayStore } from '../../src/auth/dpop.ts'
import { durableReplayStore, ReplayStoreError, type ReplayNamespace, type ReplayObject } from '../../src/auth/dpop-store.ts'
import { parseConfig } from '../../src/config.ts'

const URL_MCP = 'https://bastion.test/mcp'
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xIn0.c2lnbmF0dXJl'
const OTHER_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudC0yIn0.c2lnbmF0dXJl'
const NOW = 1_800_000_000

interface ProofKey {
  alg: string
  privateKey: CryptoKey
  publicJwk: JWK
  privateJwk: JWK
  jkt: string
}

async function makeKey(alg: string): Promise<ProofKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const publicJwk = await exportJWK(publicKey)
  return { alg, privateKey, publicJwk, privateJwk: await exportJWK(privateKey), jkt: await calculateJwkThumbprint(publicJwk, 'sha256') }
}

let es256: ProofKey
let es384: ProofKey
let ed: ProofKey
let rs256: ProofKey
let ps256: ProofKey
let other: ProofKey

beforeAll(async () => {
  ;[es256, es384, ed, rs256, ps256, other] = await Promise.all([
    makeKey('ES256'),
    makeKey('ES384'),
    makeKey('EdDSA'),
    makeKey('RS256'),
    makeKey('PS256'),
    makeKey('ES256'),
  ])
})

let counter = 0
interface ProofOptions {
  key?: ProofKey
  /** Sign with this key instead (the header still names `key`). */
  signWith?: ProofKey
  header?: Record<string, unknown>
  claims?: JWTPayload
  omit?: string[]
}

async function proof(opts: ProofOptions = {}): Promise<string> {
  const key = opts.key ?? es256
  const claims: JWTPayload = {
    jti: `jti-${++counter}`,
    htm: 'POST',
    htu: URL_MCP,
    iat: NOW,
    ath: await accessTokenHash(TOKEN),
    ...opts.claims,
  }
  for (const name of opts.omit ?? []) delete claims[name]
  const signer = opts.signWith ?? key
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk, ...opts.header }).sign(signer.privateKey)
}

/** An unsigned or hand-built JWS: header and payload as given, signature as given. */
function rawJws(header: Record<string, unknown>, claims: Record<string, unknown>, signature = ''): string {
  const enc = (v: unknown) => base64url.encode(new TextEncoder().encode(JSON.stringify(v)))
  return `${enc(header)}.${enc(claims)}.${signature}`
}

class MemoryReplay implements ReplayStore {
  readonly seen = new Map<string, number>()
  async checkAndStore(jkt: string, jti: string, expiresAt: number): Promise<boolean> {
    const key = `${jkt}:${jti}`
    if (this.seen.has(key)) return false
    this.seen.set(key, expiresAt)
    return true
  }
}

const broken: ReplayStore = {
  checkAndStore: () => Promise.reject(new Error('replay object unreachable')),
}

function verifier(replay: ReplayStore = new MemoryReplay(), keyCacheSize?: number) {
  return createDpopVerifier({ replay, currentDate: () => new Date(NOW * 1000), ...(keyCacheSize ? { keyCacheSize } : {}) })
}

function request(proofValue: string | null, overrides: Partial<DpopRequest> = {}): DpopRequest {
  return { proof: proofValue, method: 'POST', url: URL_MCP, accessToken: TOKEN, jkt: es256.jkt, ...overrides }
}

describe('a valid DPoP proof', () => {
  it.each(['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'])('is accepted when signed with %s by the key the token is bound to', async (alg) => {
    const key = { ES256: es256, ES384: es384, EdDSA: ed, RS256: rs256, PS256: ps256 }[alg]!
    const result = await verifier()(request(await proof({ key }), { jkt: key.jkt }))
    expect(result).toMatchObject({ ok: true, proof: { jkt: key.jkt, iat: NOW, replayUntil: NOW + 61 } })
  })

  it('is accepted when the request URL carries a query (htu ignores query and fragment)', async () => {
    const result = await verifier()(request(await proof(), { url: `${URL_MCP}?x=1#frag` }))
    expect(result.ok).toBe(true)
  })

  it('is accepted when htu differs only by normalisation (case of host, default port, escapes of unreserved characters)', async () => {
    const result = await verifier()(request(await proof({ claims: { htu: 'HTTPS://Bastion.TEST:443/%6Dcp' } })))
    expect(result.ok).toBe(true)
  })

  it('is accepted with the media-type form of typ (application/dpop+jwt)', async () => {
    const result = await verifier()(request(await proof({ header: { typ: 'application/dpop+jwt' } })))
    expect(result.ok).toBe(true)
  })

  it('is accepted with an iat a little in the future (client clock ahead) and up to 60 s old', async () => {
    const v = verifier()
    expect((await v(request(await proof({ claims: { iat: NOW + 15 } })))).ok).toBe(true)
    expect((await v(request(await proof({ claims: { iat: NOW - 60 } })))).ok).toBe(true)
  })

  it('records its jti until iat + max age, under the key thumbprint', async () => {
    const replay = new MemoryReplay()
    const p = await proof({ claims: { jti: 'keep-me' } })
    await verifier(replay)(request(p))
    expect([...replay.seen]).toEqual([[`${es256.jkt}:keep-me`, NOW + 61]])
  })

  it('does not reuse a cached key under another alg (the same P-256 key named ES384 is refused)', async () => {
    const v = verifier()
    expect((await v(request(await proof()))).ok).toBe(true)
    const forged = rawJws({ alg: 'ES384', typ: 'dpop+jwt', jwk: es256.publicJwk }, { jti: 'x', htm: 'POST', htu: URL_MCP, iat: NOW }, 'AAAA')
    expect(await v(request(forged))).toMatchObject({ ok: false, code: 'bad_key' })
  })

  it('keeps verifying correctly once more keys were seen than it caches', async () => {
    const v = verifier(new MemoryReplay(), 3)
    const keys = await Promise.all(Array.from({ length: 5 }, () => makeKey('EdDSA')))
    for (const key of keys) expect((await v(request(await proof({ key }), { jkt: key.jkt }))).ok).toBe(true)
    expect((await v(request(await proof({ key: keys[0]! }), { jkt: keys[0]!.jkt }))).ok).toBe(true)
    expect(await v(request(await proof({ key: keys[1]!, signWith: keys[0]! }), { jkt: keys[1]!.jkt }))).toMatchObject({ ok: false, code: 'bad_signature' })
  })

  it('does not let a refused proof occupy the replay store', async () => {
    const replay = new MemoryReplay()
    await verifier(replay)(request(await proof({ key: other }), { jkt: es256.jkt }))
    await verifier(replay)(request(await proof({ claims: { htm: 'GET' } })))
    expect(replay.seen.size).toBe(0)
  })
})

describe('a forged or malformed DPoP proof is refused for the right reason', () => {
  const cases: [string, () => Promise<DpopRequest>, DpopFailureCode][] = [
    ['no DPoP header', async () => request(null), 'missing_proof'],
    ['an empty DPoP header', async () => request('  '), 'missing_proof'],
    ['two DPoP headers (joined by the Fetch API with ", ")', async () => request(`${await proof()}, ${await proof()}`), 'multiple_proofs'],
    ['a proof that is not a JWS', async () => request('not-a-jwt'), 'malformed'],
    ['a proof of more than 8 KiB', async () => request(await proof({ claims: { pad: 'x'.repeat(9000) } })), 'too_large'],
    ['typ JWT instead of dpop+jwt', async () => request(await proof({ header: { typ: 'JWT' } })), 'bad_type'],
    ['no typ', async () => request(rawJws({ alg: 'ES256', jwk: es256.publicJwk }, { jti: 'a', htm: 'POST', htu: URL_MCP, iat: NOW }, 'AAAA')), 'bad_type'],
    ['alg none (unsigned)', async () => request(rawJws({ alg: 'none', typ: 'dpop+jwt', jwk: es256.publicJwk }, { jti: 'a', htm: 'POST', htu: URL_MCP, iat: NOW })), 'algorithm_not_allowed'],
    [
      'a symmetric alg (HS256, signed with a shared secret)',
      async () => {
        const secret = crypto.getRandomValues(new Uint8Array(32))
        const jwt = await new SignJWT({ jti: 'hs', htm: 'POST', htu: URL_MCP, iat: NOW, ath: await accessTokenHash(TOKEN) })
          .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: base64url.encode(secret) } as unknown as JWK })
          .sign(secret)
        return request(jwt)
      },
      'algorithm_not_allowed',
    ],
    ['a symmetric (oct) jwk under an asymmetric alg', async () => request(await proof({ header: { jwk: { kty: 'oct', k: 'c2VjcmV0' } } })), 'symmetric_key'],
    ['the private key in the jwk (member d)', async () => request(await proof({ header: { jwk: es256.privateJwk } })), 'private_key'],
    ['an RSA private key in the jwk', async () => request(await proof({ key: rs256, header: { jwk: rs256.privateJwk } }), { jkt: rs256.jkt }), 'private_key'],
    ['no jwk', async () => request(await proof({ header: { jwk: undefined } })), 'missing_key'],
    ['a jwk of an unknown kty', async () => request(await proof({ header: { jwk: { kty: 'XYZ', x: 'a' } } })), 'bad_key'],
    ['a jwk that does not fit the alg (EC key, RS256)', async () => request(rawJws({ alg: 'RS256', typ: 'dpop+jwt', jwk: es256.publicJwk }, { jti: 'a' }, 'AAAA')), 'bad_key'],
    ['a signature by another key than the embedded jwk', async () => request(await proof({ signWith: other })), 'bad_signature'],
    ['a wrong htu (another path)', async () => request(await proof({ claims: { htu: 'https://bastion.test/other' } })), 'wrong_url'],
    ['a wrong htu (another host)', async () => request(await proof({ claims: { htu: 'https://evil.test/mcp' } })), 'wrong_url'],
    ['a wrong htu (http instead of https)', async () => request(await proof({ claims: { htu: 'http://bastion.test/mcp' } })), 'wrong_url'],
    ['an htu that is not a URL', async () => request(await proof({ claims: { htu: '/mcp' } })), 'wrong_url'],
    ['refuses a DPoP proof whose htu carries userinfo (user:password@)', async () => request(await proof({ claims: { htu: 'https://u:p@bastion.test/mcp' } })), 'wrong_url'],
    ['an htu carrying a user name only (user@)', async () => request(await proof({ claims: { htu: 'https://u@bastion.test/mcp' } })), 'wrong_url'],
    ['an htu carrying an empty userinfo (@)', async () => request(await proof({ claims: { htu: 'https://@bastion.test/mcp' } })), 'wrong_url'],
    ['a wrong htm (GET for a POST)', async () => request(await proof({ claims: { htm: 'GET' } })), 'wrong_method'],
    ['htm in lower case (methods are case-sensitive)', async () => request(await proof({ claims: { htm: 'post' } })), 'wrong_method'],
    ['a stale iat (61 s old)', async () => request(await proof({ claims: { iat: NOW - 61 } })), 'stale'],
    ['a future iat (16 s ahead)', async () => request(await proof({ claims: { iat: NOW + 16 } })), 'future'],
    ['an iat that is not a number', async () => request(await proof({ claims: { iat: String(NOW) as unknown as number } })), 'invalid_claim'],
    ['no jti', async () => request(await proof({ omit: ['jti'] })), 'missing_claim'],
    ['no iat', async () => request(await proof({ omit: ['iat'] })), 'missing_claim'],
    ['an empty jti', async () => request(await proof({ claims: { jti: '' } })), 'invalid_claim'],
    ['no ath although an access token is presented', async () => request(await proof({ omit: ['ath'] })), 'missing_ath'],
    ['the ath of another token', async () => request(await proof({ claims: { ath: await accessTokenHash(OTHER_TOKEN) } })), 'wrong_ath'],
    ['a valid proof for the right token made with a key the token is not bound to', async () => request(await proof({ key: other })), 'key_mismatch'],
  ]

  it.each(cases)('%s', async (_name, build, code) => {
    const result = await verifier()(await build())
    expect(result).toMatchObject({ ok: false, code })
  })

  it('a reused jti (the same proof presented twice)', async () => {
    const v = verifier()
    const p = await proof()
    expect((await v(request(p))).ok).toBe(true)
    expect(await v(request(p))).toMatchObject({ ok: false, code: 'replayed' })
  })

  it('a new proof that reuses the jti of an earlier one with the same key', async () => {
    const v = verifier()
    expect((await v(request(await proof({ claims: { jti: 'same' } })))).ok).toBe(true)
    expect(await v(request(await proof({ claims: { jti: 'same', iat: NOW + 1 } })))).toMatchObject({ ok: false, code: 'replayed' })
  })

  it('fails closed when the replay store cannot answer', async () => {
    expect(await verifier(broken)(request(await proof()))).toMatchObject({ ok: false, code: 'replay_unavailable' })
  })

  it('accepts exactly one of 20 concurrent presentations of one proof', async () => {
    const v = verifier()
    const p = await proof()
    const results = await Promise.all(Array.from({ length: 20 }, () => v(request(p))))
    expect(results.filter((r) => r.ok)).toHaveLength(1)
    expect(results.filter((r) => !r.ok && r.code === 'replayed')).toHaveLength(19)
  })
})

describe('htu normalisation', () => {
  it.each([
    ['https://Bastion.Test/mcp', 'https://bastion.test/mcp'],
    ['https://bastion.test:443/mcp?q=1#f', 'https://bastion.test/mcp'],
    ['http://127.0.0.1:8787/mcp', 'http://127.0.0.1:8787/mcp'],
    ['https://bastion.test/a/../mcp', 'https://bastion.test/mcp'],
    ['https://bastion.test/%7euser/%2f', 'https://bastion.test/~user/%2F'],
  ])('%s → %s', (input, expected) => {
    expect(normalizeHtu(input)).toBe(expected)
  })

  it.each(['/mcp', 'ftp://bastion.test/mcp', 'not a url', 'http://u:p@bastion.test/mcp', 'https://u@bastion.test/mcp', 'https://@bastion.test/mcp', 'https://:p@bastion.test/mcp'])('refuses %s', (input) => {
    expect(normalizeHtu(input)).toBeUndefined()
  })
})

describe('the replay store over the Durable Object namespace (dpop-store.ts)', () => {
  // The namespace is a stand-in here: what is tested is the adapter's naming,
  // timeout and error mapping; the object itself runs in test/integration/dpop.test.ts.
  function namespace(object: ReplayObject, names: string[] = []): ReplayNamespace {
    return {
      idFromName: (name) => {
        names.push(name)
        return { name } as unknown as DurableObjectId
      },
      get: () => object,
    }
  }

  it('asks the object named by the key thumbprint, once, with the jti and expiry', async () => {
    const names: string[] = []
    const calls: [string, number][] = []
    const store = durableReplayStore(namespace({ checkAndStore: async (jti, exp) => (calls.push([jti, exp]), true) }, names))
    expect(await store.checkAndStore('jkt-a', 'jti-1', 123)).toBe(true)
    expect(names).toEqual(['jkt-a'])
    expect(calls).toEqual([['jti-1', 123]])
  })

  it('fails closed (throws) when the object does not answer within the timeout', async () => {
    const store = durableReplayStore(namespace({ checkAndStore: () => new Promise<boolean>(() => {}) }), 20)
    await expect(store.checkAndStore('jkt', 'jti', 1)).rejects.toBeInstanceOf(ReplayStoreError)
  })

  it('fails closed (throws) when the object call fails', async () => {
    const store = durableReplayStore(namespace({ checkAndStore: () => Promise.reject(new Error('reset')) }))
    await expect(store.checkAndStore('jkt', 'jti', 1)).rejects.toThrow(/replay object failed: reset/)
  })
})

describe('AUTH_DPOP configuration', () => {
  const base = { AUTH_ISSUER: 'https://issuer.test', AUTH_AUDIENCE: 'https://bastion.test/mcp', AUTH_JWKS: JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b' }] }) }

  it.each([
    [undefined, 'allowed'],
    ['', 'allowed'],
    ['off', 'off'],
    ['Required', 'required'],
    ['allowed', 'allowed'],
  ])('%s → %s', (value, mode) => {
    const r = parseConfig({ ...base, ...(value === undefined ? {} : { AUTH_DPOP: value }) })
    expect(r.ok && r.config.dpop).toBe(mode)
  })

  it('refuses an unknown mode, naming the setting (never a silent default)', () => {
    expect(parseConfig({ ...base, AUTH_DPOP: 'sometimes' })).toEqual({ ok: false, setting: 'AUTH_DPOP', problem: 'must be one of off, allowed, required' })
  })
})
