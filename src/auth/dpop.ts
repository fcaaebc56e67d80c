// DPoP proof verification (RFC 9449 §4.3 and §7): pure, no HTTP framework.
// The resource server's side of "sender-constrained" access tokens: a token
// whose `cnf.jkt` names a key thumbprint is only good together with a fresh
// proof, signed by that key, over this very request. Each check is explicit,
// in the order of §4.3, and yields a stable `code` for the log; the wire only
// ever says `invalid_dpop_proof`.
//
// What is checked, top to bottom:
//   exactly one DPoP header, a JWS compact string of bounded size;
//   header: typ `dpop+jwt`, alg from the asymmetric allow-list (never `none`,
//     never HS*), `jwk` an asymmetric public key (RSA, EC, OKP) with no
//     private member;
//   the signature verifies with that embedded key;
//   claims: `jti` (bounded string), `htm` = the request method, `htu` = the
//     request URL without query and fragment (both normalised, §4.3 step 9),
//     `iat` within [now - maxAge, now + futureSkew];
//   binding: `ath` = base64url(SHA-256(access token)) and the key's RFC 7638
//     thumbprint = the token's `cnf.jkt`;
//   last, and only for a proof that passed everything else: `jti` seen once
//     (the replay store, shared across isolates; unreachable → fail closed).
import { sha256 } from '../digest.ts'
import { base64url, calculateJwkThumbprint, compactVerify, decodeProtectedHeader, errors, importJWK, type CryptoKey, type JWK } from 'jose'

/** Asymmetric JWS algorithms accepted for proofs (RFC 9449 §11.6 forbids symmetric algs and `none`). */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA', 'Ed25519'] as const

export type DpopFailureCode =
  | 'missing_proof'
  | 'multiple_proofs'
  | 'too_large'
  | 'malformed'
  | 'bad_type'
  | 'algorithm_not_allowed'
  | 'missing_key'
  | 'private_key'
  | 'symmetric_key'
  | 'bad_key'
  | 'bad_signature'
  | 'missing_claim'
  | 'invalid_claim'
  | 'wrong_method'
  | 'wrong_url'
  | 'stale'
  | 'future'
  | 'missing_ath'
  | 'wrong_ath'
  | 'key_mismatch'
  | 'replayed'
  | 'replay_unavailable'

export interface VerifiedProof {
  jti: string
  /** RFC 7638 SHA-256 thumbprint of the proof key (= the token's cnf.jkt). */
  jkt: string
  iat: number
  /** Until when (seconds since epoch) the proof could still pass the iat check: how long its jti is kept. */
  replayUntil: number
}

export type DpopResult = { ok: true; proof: VerifiedProof } | { ok: false; code: DpopFailureCode; detail: string }

/**
 * The jti store. `checkAndStore` returns true when (jkt, jti) was not seen
 * before and records it until `expiresAt` (seconds since epoch), atomically:
 * of any number of concurrent callers with one pair, exactly one gets true.
 * It throws when the store cannot answer (the verifier then fails closed).
 */
export interface ReplayStore {
  checkAndStore(jkt: string, jti: string, expiresAt: number): Promise<boolean>
}

export interface DpopVerifierOptions {
  replay: ReplayStore
  algorithms?: readonly string[]
  /** How old a proof's iat may be, in seconds. Default 60. */
  maxAgeSeconds?: number
  /** How far in the future a proof's iat may be (client clock ahead), in seconds. Default 15. */
  futureSkewSeconds?: number
  /** How many proof keys (imported, with their thumbprint) are kept per verifier. Default 256. */
  keyCacheSize?: number
  /** For tests: the verification time. */
  currentDate?: () => Date
}

export interface DpopRequest {
  /**
   * Every value of the request's DPoP header field. With the Fetch API's
   * Headers, pass `headers.get('dpop')`: repeated fields arrive joined by
   * ", ", which no JWS compact string contains, so a second proof is seen.
   */
  proof: string | null | undefined
  method: string
  /** The full request URL as received. */
  url: string
  /** The access token the proof accompanies (for `ath`). */
  accessToken: string
  /** The token's `cnf.jkt`. */
  jkt: string
}

export type DpopVerifier = (request: DpopRequest) => Promise<DpopResult>

const MAX_PROOF_LENGTH = 8192
const MAX_JTI_LENGTH = 256
const DPOP_TYPES = new Set(['dpop+jwt', 'application/dpop+jwt'])
const NEVER = /^(none|HS\d+)$/i
const ASYMMETRIC_KTY = new Set(['RSA', 'EC', 'OKP'])
/** JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1, RFC 8037 §2; `priv` of the AKP drafts). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const
/** The public members kept when importing the key: nothing else of the header's jwk is trusted. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = { RSA: ['kty', 'n', 'e'], EC: ['kty', 'crv', 'x', 'y'], OKP: ['kty', 'crv', 'x'] }
/** Three base64url parts; an empty signature (alg none) is let through here to be refused by name below. */
const COMPACT_JWS = /^[\w-]+\.[\w-]+\.[\w-]*$/

function failure(code: DpopFailureCode, detail: string): DpopResult {
  return { ok: false, code, detail }
}

/** The `ath` of an access token: base64url(SHA-256(ASCII token)), RFC 9449 §4.2. */
export async function accessTokenHash(accessToken: string): Promise<string> {
  return base64url.encode(await sha256(accessToken))
}

const UNRESERVED = /[A-Za-z0-9\-._~]/
/**
 * The URL compared for `htu` (RFC 9449 §4.3 step 9): scheme, host, port and
 * path, without query and fragment, after syntax- and scheme-based
 * normalisation (RFC 3986 §6.2.2, §6.2.3): lower-case scheme and host,
 * default port dropped, dot segments removed (the WHATWG URL parser does
 * these), percent-encodings upper-cased and those of unreserved characters
 * decoded. Undefined when the value is not an absolute http(s) URL, or
 * carries userinfo (`https://user:pass@host/mcp`).
 */
export function normalizeHtu(value: string): string | undefined {
  if (!URL.canParse(value)) return undefined
  const u = new URL(value)
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return undefined
  // A URI with userinfo is never this resource's URL (RFC 3986 §3.2.1 deprecates it; RFC 9449 compares the request's URI).
  if (u.username !== '' || u.password !== '' || /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(value)) return undefined
  const path = u.pathname.replace(/%[0-9a-fA-F]{2}/g, (escape) => {
    const char = String.fromCharCode(parseInt(escape.slice(1), 16))
    return UNRESERVED.test(char) ? char : escape.toUpperCase()
  })
  return `${u.protocol}//${u.host}${path}`
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function createDpopVerifier(opts: DpopVerifierOptions): DpopVerifier {
  const algorithms = (opts.algorithms ?? DPOP_ALGORITHMS).filter((a) => !NEVER.test(a))
  if (algorithms.length === 0) throw new Error('createDpopVerifier: no acceptable algorithm')
  const maxAge = opts.maxAgeSeconds ?? 60
  const futureSkew = opts.futureSkewSeconds ?? 15
  // A client signs every proof with the same key: its import and thumbprint
  // (about as costly as the signature check) are kept per isolate, keyed by
  // alg + the public members, bounded (oldest entry dropped first).
  const keyCacheSize = opts.keyCacheSize ?? 256
  const keys = new Map<string, { key: CryptoKey; jkt: string }>()
  async function keyFor(alg: string, publicJwk: JWK): Promise<{ key: CryptoKey; jkt: string }> {
    const id = `${alg}|${JSON.stringify(publicJwk)}`
    let entry = keys.get(id)
    if (entry === undefined) {
      const key = await importJWK(publicJwk, alg)
      if (key instanceof Uint8Array) throw new TypeError('jwk imported as a secret')
      entry = { key, jkt: await calculateJwkThumbprint(publicJwk, 'sha256') }
      if (keys.size >= keyCacheSize) keys.delete(keys.keys().next().value!)
      keys.set(id, entry)
    }
    return entry
  }

  return async function verifyDpopProof(request: DpopRequest): Promise<DpopResult> {
    // §4.3 step 1: exactly one DPoP HTTP request header field.
    const raw = request.proof
    if (raw === null || raw === undefined || raw.trim() === '') return failure('missing_proof', 'no DPoP header')
    if (raw.includes(',')) return failure('multiple_proofs', 'more than one DPoP header field')
    const proof = raw.trim()
    if (proof.length > MAX_PROOF_LENGTH) return failure('too_large', `proof is ${proof.length} characters`)
    // Step 2: a well-formed JWT (three parts; a detached or unsigned JWS is not).
    if (!COMPACT_JWS.test(proof)) return failure('malformed', 'not a JWS compact serialization')

    let header: ReturnType<typeof decodeProtectedHeader>
    try {
      header = decodeProtectedHeader(proof)
    } catch (error) {
      return failure('malformed', `unreadable protected header: ${error instanceof Error ? error.message : String(error)}`)
    }
    // Step 4: typ. A media type, so compared case-insensitively (RFC 7515 §4.1.9).
    if (typeof header.typ !== 'string' || !DPOP_TYPES.has(header.typ.toLowerCase())) {
      return failure('bad_type', `typ ${String(header.typ)} is not dpop+jwt`)
    }
    // Step 5: an asymmetric algorithm from the list, checked before any key is touched.
    if (typeof header.alg !== 'string' || !algorithms.includes(header.alg)) {
      return failure('algorithm_not_allowed', `alg ${String(header.alg)} is not accepted for DPoP proofs`)
    }
    // Step 6: jwk is a public key. A private or symmetric key in a proof is
    // refused outright (never imported), whatever the signature says.
    const jwk: unknown = header.jwk
    if (!isRecord(jwk)) return failure('missing_key', 'header has no jwk object')
    if (typeof jwk['kty'] !== 'string') return failure('bad_key', 'jwk has no kty')
    if (jwk['kty'] === 'oct') return failure('symmetric_key', 'jwk is a symmetric (oct) key')
    const privateMember = PRIVATE_MEMBERS.find((m) => m in jwk)
    if (privateMember !== undefined) return failure('private_key', `jwk carries the private member "${privateMember}"`)
    if (!ASYMMETRIC_KTY.has(jwk['kty'])) return failure('bad_key', `jwk kty ${jwk['kty'].slice(0, 16)} is not RSA, EC or OKP`)
    const members = PUBLIC_MEMBERS[jwk['kty']]!
    const publicJwk: JWK = {}
    for (const m of members) {
      const v = jwk[m]
      if (typeof v !== 'string' || v.length === 0) return failure('bad_key', `jwk member ${m} is missing`)
      ;(publicJwk as Record<string, string>)[m] = v
    }

    // Step 7: the signature, with the embedded key.
    let payloadBytes: Uint8Array
    let jkt: string
    try {
      const imported = await keyFor(header.alg, publicJwk)
      jkt = imported.jkt
      ;({ payload: payloadBytes } = await compactVerify(proof, imported.key, { algorithms }))
    } catch (error) {
      if (error instanceof errors.JWSSignatureVerificationFailed) return failure('bad_signature', 'signature does not verify with the embedded jwk')
      if (error instanceof errors.JWSInvalid) return failure('malformed', error.message)
      return failure('bad_key', `jwk unusable with ${header.alg}: ${error instanceof Error ? error.message : String(error)}`)
    }

    let claims: unknown
    try {
      claims = JSON.parse(new TextDecoder().decode(payloadBytes))
    } catch {
      return failure('malformed', 'payload is not JSON')
    }
    if (!isRecord(claims)) return failure('malformed', 'payload is not a JSON object')

    // Step 8: the required claims.
    for (const name of ['jti', 'htm', 'htu', 'iat'] as const) {
      if (!(name in claims)) return failure('missing_claim', `missing claim ${name}`)
    }
    const { jti, htm, htu, iat } = claims
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) {
      return failure('invalid_claim', `jti must be a string of 1..${MAX_JTI_LENGTH} characters`)
    }
    if (typeof htm !== 'string') return failure('invalid_claim', 'htm must be a string')
    if (typeof htu !== 'string') return failure('invalid_claim', 'htu must be a string')
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return failure('invalid_claim', 'iat must be a number')

    // Step 9: this request's method (case-sensitive, RFC 9110 §9.1) and URL.
    if (htm !== request.method) return failure('wrong_method', `htm ${htm.slice(0, 16)} is not ${request.method}`)
    const expected = normalizeHtu(request.url)
    if (expected === undefined) return failure('wrong_url', 'request URL is not an absolute http(s) URL')
    const presented = normalizeHtu(htu)
    if (presented !== expected) return failure('wrong_url', `htu ${htu.slice(0, 200)} is not ${expected}`)

    // Step 11: iat within the window (no server nonces: see README "DPoP").
    const now = Math.floor((opts.currentDate?.() ?? new Date()).getTime() / 1000)
    if (iat < now - maxAge) return failure('stale', `iat ${iat} is more than ${maxAge} s old`)
    if (iat > now + futureSkew) return failure('future', `iat ${iat} is more than ${futureSkew} s ahead`)

    // Step 12: bound to this access token ...
    const ath = claims['ath']
    if (ath === undefined) return failure('missing_ath', 'proof has no ath although an access token is presented')
    if (typeof ath !== 'string' || ath !== (await accessTokenHash(request.accessToken))) {
      return failure('wrong_ath', 'ath is not the hash of the presented access token')
    }
    // ... and the token is bound to this key (RFC 9449 §6.1, §7.1).
    if (jkt !== request.jkt) return failure('key_mismatch', 'proof key thumbprint does not match the token cnf.jkt')

    // §11.1: a proof is used once. Last, so only proofs made with the token's
    // own key can occupy the store.
    const replayUntil = Math.floor(iat) + maxAge + 1
    let fresh: boolean
    try {
      fresh = await opts.replay.checkAndStore(jkt, jti, replayUntil)
    } catch (error) {
      return failure('replay_unavailable', error instanceof Error ? error.message : String(error))
    }
    if (!fresh) return failure('replayed', 'jti was already used with this key')

    return { ok: true, proof: { jti, jkt, iat, replayUntil } }
  }
}
