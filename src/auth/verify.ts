// Access-token verification: pure, no HTTP framework. Built once per isolate
// (keys imported, the remote JWKS cache and the introspection cache created at
// build time), then called per request. A JWT-shaped token is verified as a
// JWT when a key set is configured; any other token is introspected (RFC 7662,
// introspect.ts) when an introspection endpoint is configured, and refused
// otherwise. Each check is explicit and yields a stable `code` (token.ts);
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
import type { ClaimMapping } from './claims.ts'
import { createIntrospectionVerifier, type IntrospectionOptions } from './introspect.ts'
import { createRemoteKeySet, KeysUnavailableError } from './remote-jwks.ts'
import { failure, MAX_TOKEN_LENGTH, tokenDigest, tokenFromClaims, type TokenVerifier, type VerifyResult } from './token.ts'

export interface VerifierOptions {
  issuer: string
  /** AUTH_AUDIENCE, then AUTH_EXTRA_AUDIENCES: `aud` must name one of them. */
  audiences: readonly string[]
  algorithms: readonly string[]
  /** The issuer's keys, for JWT access tokens; absent: only introspected tokens are accepted. */
  jwks: RemoteJwks | { kind: 'local'; document: JwksDocument } | undefined
  /** Where scopes and roles are read from (claims.ts). */
  mapping: ClaimMapping
  /** Opaque access tokens (RFC 7662); the issuer, audiences and mapping above apply to them too. */
  introspection?: Omit<IntrospectionOptions, 'issuer' | 'audiences' | 'mapping'> | undefined
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

const ALLOWED_TYPES = new Set(['jwt', 'at+jwt', 'application/at+jwt'])
const AT_JWT_TYPES = new Set(['at+jwt', 'application/at+jwt'])
/**
 * A token without `kid` may match several keys of the set (e.g. during a key
 * rotation). Each candidate is tried; more than this many is refused rather
 * than spending a signature check per key on an unauthenticated request.
 */
const MAX_CANDIDATE_KEYS = 8
const NEVER = /^(none|HS\d+)$/i

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

const JWS_COMPACT = /^[\w-]+\.[\w-]+\.[\w-]*$/

export function createTokenVerifier(opts: VerifierOptions): TokenVerifier {
  const verifyJwt = opts.jwks ? createJwtVerifier(opts, opts.jwks) : undefined
  const verifyOpaque = opts.introspection
    ? createIntrospectionVerifier({ ...opts.introspection, issuer: opts.issuer, audiences: opts.audiences, mapping: opts.mapping })
    : undefined
  return async function verifyToken(token: string): Promise<VerifyResult> {
    if (token.length > MAX_TOKEN_LENGTH) return failure('too_large', `token is ${token.length} characters`)
    if (verifyJwt && JWS_COMPACT.test(token)) return verifyJwt(token)
    if (verifyOpaque) return verifyOpaque(token)
    return failure('malformed', 'not a JWS compact serialization')
  }
}

function createJwtVerifier(opts: VerifierOptions, jwks: NonNullable<VerifierOptions['jwks']>): TokenVerifier {
  const algorithms = opts.algorithms.filter((a) => !NEVER.test(a))
  if (algorithms.length === 0) throw new Error('createTokenVerifier: no acceptable algorithm')
  const keys: JWTVerifyGetKey =
    jwks.kind === 'local'
      ? createLocalJWKSet(jwks.document as Parameters<typeof createLocalJWKSet>[0])
      : createRemoteKeySet({
          url: jwks.url,
          timeoutMs: 5000,
          cooldownMs: (jwks.cooldownSeconds ?? 30) * 1000,
          cacheMaxAgeMs: (jwks.cacheSeconds ?? 600) * 1000,
        })
  const clockTolerance = opts.clockToleranceSeconds ?? 30
  const audience = [...opts.audiences]

  return async function verifyJwt(token: string): Promise<VerifyResult> {
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
        audience,
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
    return tokenFromClaims(payload, { subject: payload.sub, expiresAt: payload.exp!, digest: await tokenDigest(token), mapping: opts.mapping })
  }
}
