// What every access-token check yields, whichever way the token was checked
// (a JWT verified against the issuer's keys, or an opaque token introspected):
// a `VerifiedToken`, or a failure with a stable `code`. Callers match on the
// code, never on message text; the detail goes to the log only.
import { mapRoles, notAccessToken, readBound, readGrant, type ClaimMapping } from './claims.ts'
import { sha256, toHex } from '../digest.ts'

export interface VerifiedToken {
  sub: string
  scopes: string[]
  /** Role names after AUTH_ROLE_MAP; the policy ignores the ones it does not know. */
  roles: string[]
  /** `jti` if the token has one, else "sha256:" + 16 hex chars of its digest. Never the token. */
  tokenId: string
  clientId: string | undefined
  expiresAt: number
  /** `cnf.jkt` (RFC 9449 §6): the thumbprint of the key a DPoP-bound token is bound to. */
  jkt: string | undefined
  /** The claims of `ClaimMapping.boundClaims` the token has as a string (at most 256 characters) or a finite number. */
  claims: ReadonlyMap<string, string | number>
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
  | 'inactive'
  /** The issuer's keys cannot be fetched: an outage (503), not a bad token. */
  | 'keys_unavailable'
  /** The introspection endpoint failed, timed out or answered nonsense: an outage (503). */
  | 'introspection_unavailable'
  /** More tokens to introspect than AUTH_INTROSPECTION_RATE allows: 503 with Retry-After: 1. */
  | 'introspection_busy'

export type VerifyResult = { ok: true; token: VerifiedToken } | { ok: false; code: TokenFailureCode; detail: string }

export type TokenVerifier = (token: string) => Promise<VerifyResult>

/** Longest token accepted on either path. */
export const MAX_TOKEN_LENGTH = 8192

export function failure(code: TokenFailureCode, detail: string): VerifyResult {
  return { ok: false, code, detail }
}

/** Hex SHA-256 of the token: the only form in which a token is kept (cache keys, ids). */
export async function tokenDigest(token: string): Promise<string> {
  return toHex(await sha256(token))
}

/**
 * The claims both paths read once `iss`, `aud` and the times are checked:
 * that they are an access token (claims.ts `notAccessToken`), the subject
 * (`facts.subject`: `sub`, or the `client_id` of an introspected token that
 * has no `sub`), scopes and roles through the claim mapping,
 * `client_id`/`azp`/`cid`, and `cnf.jkt`.
 */
export function tokenFromClaims(
  claims: Readonly<Record<string, unknown>>,
  facts: { subject: unknown; expiresAt: number; digest: string; mapping: ClaimMapping },
): VerifyResult {
  const { subject } = facts
  const kind = notAccessToken(claims, facts.mapping)
  if (kind !== undefined) return failure('invalid_claim', kind)
  if (typeof subject !== 'string' || subject.length === 0 || subject.length > 256) {
    return failure('invalid_claim', 'sub must be a non-empty string of at most 256 characters')
  }
  const grant = readGrant(claims, facts.mapping)
  if (!grant.ok) return failure('invalid_claim', grant.detail)
  // `cid`: Okta's name for the client id.
  const clientId = claims['client_id'] ?? claims['azp'] ?? claims['cid']
  // Sender-constrained tokens: only DPoP binding (cnf.jkt) can be checked here;
  // a token bound some other way (e.g. mTLS x5t#S256) is refused, not trusted as bearer.
  const cnf = claims['cnf']
  let jkt: string | undefined
  if (cnf !== undefined) {
    if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return failure('invalid_claim', 'cnf must be an object')
    const value = (cnf as Record<string, unknown>)['jkt']
    if (typeof value !== 'string' || !/^[\w-]{43}$/.test(value)) return failure('invalid_claim', 'cnf has no SHA-256 jkt: only DPoP-bound tokens are supported')
    jkt = value
  }
  const jti = claims['jti']
  return {
    ok: true,
    token: {
      sub: subject,
      scopes: grant.scopes,
      roles: mapRoles(grant.idpRoles, facts.mapping),
      tokenId: typeof jti === 'string' && jti.length > 0 && jti.length <= 128 ? jti : `sha256:${facts.digest.slice(0, 16)}`,
      clientId: typeof clientId === 'string' ? clientId : undefined,
      expiresAt: facts.expiresAt,
      jkt,
      claims: readBound(claims, facts.mapping.boundClaims ?? []),
    },
  }
}
