// Opaque access tokens, checked by OAuth 2.0 token introspection (RFC 7662)
// at AUTH_INTROSPECTION_URL with client_secret_basic. Pure: no framework;
// `fetch` and the clock are injectable. Built once per isolate by verify.ts
// (which refuses tokens over 8 KiB first), then called per request.
//
// The contract:
//   - the answer must be HTTP 200 with a JSON object whose `active` is a
//     boolean; anything else (an error status, a timeout after `timeoutMs`,
//     a network failure, not JSON) is `introspection_unavailable`: a 503 with
//     Retry-After upstream, never a pass;
//   - `active: false` is `inactive` (401). An active token is checked as a
//     JWT is, with the same 30 s clock tolerance: `exp` required and not
//     past, `nbf`/`iat` not in the future, `iss` = the issuer, `aud` (string
//     or array) naming one of `audiences`, `token_type` absent, Bearer or
//     DPoP (DPoP only with `cnf.jkt`); then, in token.ts, that it is an
//     access token, `sub` (a token without one, as client-credentials tokens
//     may be, acts as its `client_id`), scopes and roles through the claim
//     mapping, and `cnf.jkt`;
//   - results are cached per SHA-256 of the token (never the token itself)
//     until the earlier of its `exp` and `cacheSeconds` from now; a refusal
//     the endpoint decided (inactive, wrong audience, …) is cached for
//     `cacheSeconds` too, an outage is not cached. At most `maxEntries`
//     accepted and `maxEntries` refused results are kept, apart, the oldest
//     dropped first, so refusals never push an accepted token out;
//   - tokens not in the cache are introspected at most `ratePerSecond` per
//     second per isolate (a token bucket of that size): past it the check
//     fails with `introspection_busy` (503, Retry-After: 1), so a flood of
//     made-up tokens costs the endpoint a bounded number of requests. A token
//     accepted before and not yet expired is introspected again outside the
//     bucket when its cache time is over, so such a flood does not lock out
//     callers already known (one request per token per cacheSeconds). Several
//     requests with the same uncached token wait for the one introspection in
//     flight (by polling the cache: a promise is never shared across requests
//     on Workers) instead of each starting their own.
import { sleep } from '../sleep.ts'
import type { ClaimMapping } from './claims.ts'
import { failure, tokenDigest, tokenFromClaims, type TokenVerifier, type VerifyResult } from './token.ts'

export interface IntrospectionOptions {
  url: URL
  clientId: string
  clientSecret: string
  issuer: string
  /** AUTH_AUDIENCE and AUTH_EXTRA_AUDIENCES: an active token's `aud` must name one. */
  audiences: readonly string[]
  mapping: ClaimMapping
  /** AUTH_INTROSPECTION_CACHE_SECONDS. */
  cacheSeconds: number
  /** AUTH_INTROSPECTION_TIMEOUT_MS. */
  timeoutMs: number
  /** AUTH_INTROSPECTION_RATE: introspection requests per second for tokens not in the cache. */
  ratePerSecond: number
  clockToleranceSeconds?: number
  maxEntries?: number
  fetch?: typeof fetch
  now?: () => number
  /** How long to sleep between looks at an introspection in flight (tests). */
  pollMs?: number
}

/** RFC 6750 §2.1 b64token: anything else is not sent to the endpoint. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/
const MAX_RESPONSE_CHARS = 65_536
const ACCESS_TOKEN_TYPES = new Set(['bearer', 'dpop'])
const DEFAULT_MAX_ENTRIES = 10_000

interface Entry<R> {
  result: R
  /** Answered from the cache until then. */
  until: number
}

/** A bounded map, oldest entry dropped first. */
function put<V>(map: Map<string, V>, key: string, value: V, maxEntries: number): void {
  map.delete(key)
  map.set(key, value)
  while (map.size > maxEntries) map.delete(map.keys().next().value!)
}

function basicAuthorization(clientId: string, clientSecret: string): string {
  // RFC 6749 §2.3.1: each part form-urlencoded before base64.
  const encode = (v: string) => encodeURIComponent(v).replace(/%20/g, '+')
  return `Basic ${btoa(`${encode(clientId)}:${encode(clientSecret)}`)}`
}

export function createIntrospectionVerifier(opts: IntrospectionOptions): TokenVerifier {
  const doFetch = opts.fetch ?? ((input, init) => fetch(input, init))
  const now = opts.now ?? Date.now
  const pollMs = opts.pollMs ?? 20
  const tolerance = opts.clockToleranceSeconds ?? 30
  const maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES
  const authorization = basicAuthorization(opts.clientId, opts.clientSecret)
  const href = opts.url.href
  // Accepted and refused tokens are kept apart, so refusals (what a flood of
  // made-up tokens produces) never push an accepted token out.
  const accepted = new Map<string, Entry<Extract<VerifyResult, { ok: true }>>>()
  const refused = new Map<string, Entry<VerifyResult>>()
  const inFlight = new Map<string, number>()
  let tokens = opts.ratePerSecond
  let refilledAt = now()

  function cached(digest: string): VerifyResult | undefined {
    const hit = accepted.get(digest) ?? refused.get(digest)
    return hit && now() < hit.until ? hit.result : undefined
  }

  /**
   * An accepted token whose cache time is over but which has not expired: it
   * is introspected again outside the rate bucket, so a flood of made-up
   * tokens cannot lock out callers already known (at most one such request
   * per token per cacheSeconds).
   */
  function knownActive(digest: string): boolean {
    const entry = accepted.get(digest)
    if (entry && now() >= entry.result.token.expiresAt * 1000) accepted.delete(digest)
    return accepted.has(digest)
  }

  function remember(digest: string, result: VerifyResult): void {
    const ttlEnd = now() + opts.cacheSeconds * 1000
    if (result.ok) {
      refused.delete(digest)
      put(accepted, digest, { result, until: Math.min(ttlEnd, result.token.expiresAt * 1000) }, maxEntries)
    } else {
      accepted.delete(digest)
      put(refused, digest, { result, until: ttlEnd }, maxEntries)
    }
  }

  function takeRequest(): boolean {
    const t = now()
    tokens = Math.min(opts.ratePerSecond, tokens + ((t - refilledAt) / 1000) * opts.ratePerSecond)
    refilledAt = t
    if (tokens < 1) return false
    tokens -= 1
    return true
  }

  /** The endpoint's answer, checked as a JWT's claims are (see the header). */
  function check(body: Record<string, unknown>, digest: string): VerifyResult {
    if (body['active'] !== true) return failure('inactive', 'the introspection endpoint says the token is not active')
    const nowSeconds = Math.floor(now() / 1000)
    const exp = body['exp']
    if (exp === undefined) return failure('missing_claim', 'missing claim exp')
    if (typeof exp !== 'number' || !Number.isFinite(exp)) return failure('invalid_claim', 'exp must be a number')
    if (exp <= nowSeconds - tolerance) return failure('expired', `exp ${exp} is in the past`)
    for (const name of ['nbf', 'iat'] as const) {
      const value = body[name]
      if (value === undefined) continue
      if (typeof value !== 'number' || !Number.isFinite(value)) return failure('invalid_claim', `${name} must be a number`)
      if (value > nowSeconds + tolerance) return failure('not_yet_valid', `${name} ${value} is in the future`)
    }
    const iss = body['iss']
    if (iss === undefined) return failure('missing_claim', 'missing claim iss')
    if (iss !== opts.issuer) return failure('wrong_issuer', `iss ${String(iss)} is not ${opts.issuer}`)
    const aud = body['aud']
    if (aud === undefined) return failure('missing_claim', 'missing claim aud')
    const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : []
    if (!audiences.some((a) => typeof a === 'string' && opts.audiences.includes(a))) return failure('wrong_audience', 'aud names none of the accepted audiences')
    // RFC 7662 token_type is the access token's type: absent, Bearer or DPoP (RFC 9449 §6.2).
    const tokenType = body['token_type']
    if (tokenType !== undefined && (typeof tokenType !== 'string' || !ACCESS_TOKEN_TYPES.has(tokenType.toLowerCase()))) {
      return failure('invalid_claim', `token_type ${String(tokenType)} is not Bearer or DPoP`)
    }
    const result = tokenFromClaims(body, { subject: body['sub'] === undefined ? body['client_id'] : body['sub'], expiresAt: exp, digest, mapping: opts.mapping })
    if (result.ok && typeof tokenType === 'string' && tokenType.toLowerCase() === 'dpop' && result.token.jkt === undefined) {
      return failure('invalid_claim', 'token_type DPoP without cnf.jkt')
    }
    return result
  }

  async function introspect(token: string, digest: string): Promise<VerifyResult> {
    let response: Response
    try {
      response = await doFetch(href, {
        method: 'POST',
        redirect: 'manual',
        headers: { authorization, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        signal: AbortSignal.timeout(opts.timeoutMs),
      })
    } catch (error) {
      return failure('introspection_unavailable', `introspection request failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`)
    }
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => {})
      return failure('introspection_unavailable', `introspection endpoint answered HTTP ${response.status}`)
    }
    const length = Number(response.headers.get('content-length') ?? 0)
    if (length > MAX_RESPONSE_CHARS) {
      await response.body?.cancel().catch(() => {})
      return failure('introspection_unavailable', `introspection response of ${length} bytes is over ${MAX_RESPONSE_CHARS}`)
    }
    let body: unknown
    try {
      const text = await response.text()
      if (text.length > MAX_RESPONSE_CHARS) return failure('introspection_unavailable', `introspection response is longer than ${MAX_RESPONSE_CHARS} characters`)
      body = JSON.parse(text)
    } catch (error) {
      return failure('introspection_unavailable', `introspection response is not JSON: ${error instanceof Error ? error.message : String(error)}`)
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body) || typeof (body as Record<string, unknown>)['active'] !== 'boolean') {
      return failure('introspection_unavailable', 'introspection response is not an object with a boolean active')
    }
    const result = check(body as Record<string, unknown>, digest)
    remember(digest, result)
    return result
  }

  return async function verifyOpaque(token: string): Promise<VerifyResult> {
    if (!B64TOKEN.test(token)) return failure('malformed', 'not an RFC 6750 b64token')
    const digest = await tokenDigest(token)
    const hit = cached(digest)
    if (hit) return hit
    // Another request is introspecting this token: wait for its answer.
    while (now() < (inFlight.get(digest) ?? 0)) {
      await sleep(pollMs)
      const answered = cached(digest)
      if (answered) return answered
    }
    if (!knownActive(digest) && !takeRequest()) return failure('introspection_busy', `more than ${opts.ratePerSecond} tokens per second to introspect`)
    // If the request that started it is cancelled the mark must not stick: it expires with the timeout.
    inFlight.set(digest, now() + opts.timeoutMs + pollMs)
    try {
      return await introspect(token, digest)
    } finally {
      inFlight.delete(digest)
    }
  }
}
