// Access-token verification: pure, no HTTP framework. Built once per isolate
// (keys imported and the remote JWKS cache created at build time), then
// called per request. Each check is explicit and yields a stable `code`;
// callers match on the code, never on message text. One generic message goes
// on the wire ("invalid token"); the precise reason goes to the log.
import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose'
import type { JwksDocument } from '../config.ts'
import { createRemoteKeySet, KeysUnavailableError } from './remote-jwks.ts'

export interface VerifierOptions {
  issuer: string
  audience: string
  algorithms: readonly string[]
  jwks: RemoteJwks | { kind: 'local'; document: JwksDocument }
  /** Seconds of clock skew tolerated on exp/nbf/iat. */
  clockToleranceSeconds?: number
  /** For tests: the verification time. */
  currentDate?: () => Date
  /**
   * RFC 9068 §4 strict mode: the header's `typ` must be `at+jwt` (or
   * `application/at+jwt`); a token without `typ` or with `JWT` is refused.
   * Off by default because several identity providers issue `typ: JWT`.
   */
  requireAtJwt?: boolean
}

/** AUTH_JWKS_URL; the timings are AUTH_JWKS_COOLDOWN_SECONDS / AUTH_JWKS_CACHE_SECONDS (see remote-jwks.ts). */
export interface RemoteJwks {
  kind: 'remote'
  url: URL
  /** Default 30: at most one JWKS fetch per this many seconds for unknown kids or after a failure. */
  cooldownSeconds?: number
  /** Default 600: keys are fetched again when older. */
  cacheSeconds?: number
}

export interface VerifiedToken {
  sub: string
  scopes: string[]
  role: string | undefined
  /** `jti` if the token has one, else "sha256:" + 16 hex chars of its digest. Never the token. */
  tokenId: string
  clientId: string | undefined
  expiresAt: number
  /** `cnf.jkt` (RFC 9449 §6): the thumbprint of the key a DPoP-bound token is bound to. */
  jkt: string | undefined
}

export type TokenFailureCode =
  | 'malformed'
  | 'too_large'
  | 'algorithm_not_allowed'
  | 'bad_type'
  | 'unknown_key'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'missing_claim'
  | 'invalid_claim'
  | 'keys_unavailable'

export type VerifyResult = { ok: true; token: VerifiedToken } | { ok: false; code: TokenFailureCode; detail: string }

const MAX_TOKEN_LENGTH = 8192
const ALLOWED_TYPES = new Set(['jwt', 'at+jwt', 'application/at+jwt'])
const AT_JWT_TYPES = new Set(['at+jwt', 'application/at+jwt'])
/**
 * A token without `kid` may match several keys of the set (e.g. during a key
 * rotation). Each candidate is tried; more than this many is refused rather
 * than spending a signature check per key on an unauthenticated request.
 */
const MAX_CANDIDATE_KEYS = 8
const NEVER = /^(none|HS\d+)$/i

export type TokenVerifier = (token: string) => Promise<VerifyResult>

async function digestId(token: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token)))
  return 'sha256:' + [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join('')
}

function failure(code: TokenFailureCode, detail: string): VerifyResult {
  return { ok: false, code, detail }
}

/**
 * Maps jose's errors to our codes. The remote key set reports an issuer it
 * cannot reach as KeysUnavailableError: `keys_unavailable`, logged as an
 * outage rather than a bad token.
 */
function classify(error: unknown): VerifyResult {
  if (error instanceof KeysUnavailableError) return failure('keys_unavailable', error.message)
  if (error instanceof errors.JWTExpired) return failure('expired', error.message)
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') return failure('missing_claim', `missing claim ${error.claim}`)
    if (error.claim === 'iss') return failure('wrong_issuer', error.message)
    if (error.claim === 'aud') return failure('wrong_audience', error.message)
    if (error.claim === 'nbf' || error.claim === 'iat') return failure('not_yet_valid', error.message)
    return failure('invalid_claim', error.message)
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return failure('algorithm_not_allowed', error.message)
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) return failure('unknown_key', error.message)
  if (error instanceof errors.JWSSignatureVerificationFailed) return failure('bad_signature', error.message)
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return failure('keys_unavailable', error.message)
  if (error instanceof errors.JOSEError) return failure('malformed', `${error.code}: ${error.message}`)
  if (error instanceof TypeError || error instanceof SyntaxError) return failure('malformed', error.message)
  throw error
}

/**
 * No `kid` and several keys of the set fit the token's alg (jose's
 * ERR_JWKS_MULTIPLE_MATCHING_KEYS, async-iterable over the candidates, each
 * already filtered by kty, crv, use, key_ops and the key's `alg` pin): try each.
 * Only a signature mismatch moves on to the next key; any other failure (the
 * signature verified but a claim is wrong) is the token's answer.
 */
async function verifyWithCandidates(
  token: string,
  multiple: errors.JWKSMultipleMatchingKeys,
  options: Parameters<typeof jwtVerify>[2],
): Promise<{ payload: JWTPayload }> {
  let tried = 0
  for await (const key of multiple) {
    if (++tried > MAX_CANDIDATE_KEYS) throw new errors.JWKSMultipleMatchingKeys(`token has no kid and more than ${MAX_CANDIDATE_KEYS} keys match it`)
    try {
      return await jwtVerify(token, key, options)
    } catch (error) {
      if (error instanceof errors.JWSSignatureVerificationFailed) continue
      throw error
    }
  }
  throw new errors.JWSSignatureVerificationFailed(`token has no kid and none of the ${tried} matching keys verifies it`)
}

export function createTokenVerifier(opts: VerifierOptions): TokenVerifier {
  const algorithms = opts.algorithms.filter((a) => !NEVER.test(a))
  if (algorithms.length === 0) throw new Error('createTokenVerifier: no acceptable algorithm')
  const keys: JWTVerifyGetKey =
    opts.jwks.kind === 'local'
      ? createLocalJWKSet(opts.jwks.document as Parameters<typeof createLocalJWKSet>[0])
      : createRemoteKeySet({
          url: opts.jwks.url,
          timeoutMs: 5000,
          cooldownMs: (opts.jwks.cooldownSeconds ?? 30) * 1000,
          cacheMaxAgeMs: (opts.jwks.cacheSeconds ?? 600) * 1000,
        })
  const clockTolerance = opts.clockToleranceSeconds ?? 30

  return async function verifyToken(token: string): Promise<VerifyResult> {
    if (token.length > MAX_TOKEN_LENGTH) return failure('too_large', `token is ${token.length} characters`)
    if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) return failure('malformed', 'not a JWS compact serialization')

    let header: ReturnType<typeof decodeProtectedHeader>
    try {
      header = decodeProtectedHeader(token)
    } catch (error) {
      return failure('malformed', `unreadable protected header: ${error instanceof Error ? error.message : String(error)}`)
    }
    // Checked before any key lookup, so `none`/HS* never reach a verifier.
    if (typeof header.alg !== 'string' || !algorithms.includes(header.alg)) {
      return failure('algorithm_not_allowed', `alg ${String(header.alg)} is not accepted`)
    }
    // typ is a media type: compared case-insensitively (RFC 7515 §4.1.9).
    if (opts.requireAtJwt) {
      if (typeof header.typ !== 'string' || !AT_JWT_TYPES.has(header.typ.toLowerCase())) {
        return failure('bad_type', `typ ${String(header.typ)} is not at+jwt (AUTH_REQUIRE_AT_JWT is on)`)
      }
    } else if (header.typ !== undefined && !ALLOWED_TYPES.has(String(header.typ).toLowerCase())) {
      return failure('bad_type', `typ ${String(header.typ)} is not JWT or at+jwt`)
    }

    let payload: JWTPayload
    try {
      const now = opts.currentDate?.()
      const verifyOptions = {
        issuer: opts.issuer,
        audience: opts.audience,
        algorithms,
        requiredClaims: ['iss', 'aud', 'exp', 'sub'],
        clockTolerance,
        ...(now ? { currentDate: now } : {}),
      }
      try {
        ;({ payload } = await jwtVerify(token, keys, verifyOptions))
      } catch (error) {
        if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error
        ;({ payload } = await verifyWithCandidates(token, error, verifyOptions))
      }
    } catch (error) {
      return classify(error)
    }

    // jose checks iat only with maxTokenAge; a token "issued" in the future is not valid yet.
    const nowSeconds = Math.floor((opts.currentDate?.() ?? new Date()).getTime() / 1000)
    if (typeof payload.iat === 'number' && payload.iat > nowSeconds + clockTolerance) {
      return failure('not_yet_valid', `iat ${payload.iat} is in the future`)
    }

    if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 256) {
      return failure('invalid_claim', 'sub must be a non-empty string of at most 256 characters')
    }
    const scope = payload['scope']
    if (scope !== undefined && typeof scope !== 'string') return failure('invalid_claim', 'scope must be a space-separated string')
    const role = payload['role']
    if (role !== undefined && typeof role !== 'string') return failure('invalid_claim', 'role must be a string')
    const clientId = payload['client_id'] ?? payload['azp']
    // Sender-constrained tokens: only DPoP binding (cnf.jkt) can be checked here;
    // a token bound some other way (e.g. mTLS x5t#S256) is refused, not trusted as bearer.
    const cnf = payload['cnf']
    let jkt: string | undefined
    if (cnf !== undefined) {
      if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return failure('invalid_claim', 'cnf must be an object')
      const value = (cnf as Record<string, unknown>)['jkt']
      if (typeof value !== 'string' || !/^[\w-]{43}$/.test(value)) return failure('invalid_claim', 'cnf has no SHA-256 jkt: only DPoP-bound tokens are supported')
      jkt = value
    }

    return {
      ok: true,
      token: {
        sub: payload.sub,
        scopes: typeof scope === 'string' ? scope.split(' ').filter(Boolean) : [],
        role,
        tokenId: typeof payload.jti === 'string' && payload.jti.length > 0 && payload.jti.length <= 128 ? payload.jti : await digestId(token),
        clientId: typeof clientId === 'string' ? clientId : undefined,
        expiresAt: payload.exp!,
        jkt,
      },
    }
  }
}
