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
//     JWT is: `exp` required and not past, `nbf`/`iat` not in the future,
//     `iss` = the issuer, `aud` (string or array) naming one of `audiences`,
//     `token_type` not a refresh token; then `sub` (a client-credentials
//     token without one acts as its `client_id`), scopes and roles through the
//     claim mapping, and `cnf.jkt` (token.ts);
//   - results are cached per SHA-256 of the token (never the token itself)
//     until the earlier of its `exp` and `cacheSeconds` from now; a refusal
//     the endpoint decided (inactive, wrong audience, …) is cached for
//     `cacheSeconds` too, an outage is not cached. At most `maxEntries`
//     results are kept, the oldest dropped first;
//   - tokens not in the cache are introspected at most `ratePerSecond` per
//     second per isolate (a token bucket of that size): past it the check
//     fails with `introspection_busy` (503, Retry-After: 1), so a flood of
//     made-up tokens costs the endpoint a bounded number of requests. Several
//     requests with the same uncached token wait for the one introspection in
//     flight (by polling the cache: a promise is never shared across requests
//     on Workers) instead of each starting their own.
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
const REFRESH_TOKEN_TYPES = new Set(['refresh_token', 'refresh'])
const DEFAULT_MAX_ENTRIES = 10_000

interface Entry {
  result: VerifyResult
  until: number
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

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
  const cache = new Map<string, Entry>()
  const inFlight = new Map<string, number>()
  let tokens = opts.ratePerSecond
  let refilledAt = now()

  function cached(digest: string): VerifyResult | undefined {
    const entry = cache.get(digest)
    if (!entry) return undefined
    if (now() >= entry.until) {
      cache.delete(digest)
      return undefined
    }
    return entry.result
  }

  function remember(digest: string, result: VerifyResult): void {
    const ttlEnd = now() + opts.cacheSeconds * 1000
    const until = result.ok ? Math.min(ttlEnd, result.token.expiresAt * 1000) : ttlEnd
    cache.delete(digest)
    cache.set(digest, { result, until })
    while (cache.size > maxEntries) cache.delete(cache.keys().next().value!)
  }

  function takeRequest(): boolean {
    const t = now()
    tokens = Math.min(opts.ratePerSecond, tokens + ((t - refilledAt) / 1000) * opts.ratePerSecond)
    refilledAt = t
    if (tokens < 1) return false
    tokens -= 1
    return true
  }

  /** The endpoint's answer for an active or inactive token, checked; `undefined` fields are refusals. */
  function check(body: Record<string, unknown>, digest: string): VerifyResult {
    if (body['active'] !== true) return failure('inactive', 'the introspection endpoint says the token is not active')
    const nowSeconds = Math.floor(now() / 1000)
    const exp = body['exp']
    if (exp === undefined) return failure('missing_claim', 'missing claim exp')
    if (typeof exp !== 'number' || !Number.isFinite(exp)) return failure('invalid_claim', 'exp must be a number')
    if (exp <= nowSeconds - tolerance) return failure('expired', `exp ${exp} is in the past`)
    for (const name of ['nbf', 'iat'] as const) {
      const value = body[name]
      if (value !== undefined && (typeof value !== 'number' || value > nowSeconds + tolerance)) return failure('not_yet_valid', `${name} ${String(value)} is in the future`)
    }
    const iss = body['iss']
    if (iss === undefined) return failure('missing_claim', 'missing claim iss')
    if (iss !== opts.issuer) return failure('wrong_issuer', `iss ${String(iss)} is not ${opts.issuer}`)
    const aud = body['aud']
    if (aud === undefined) return failure('missing_claim', 'missing claim aud')
    const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : []
    if (!audiences.some((a) => typeof a === 'string' && opts.audiences.includes(a))) return failure('wrong_audience', 'aud names none of the accepted audiences')
    const tokenType = body['token_type']
    if (typeof tokenType === 'string' && REFRESH_TOKEN_TYPES.has(tokenType.toLowerCase())) return failure('invalid_claim', `token_type ${tokenType} is not an access token`)
    return tokenFromClaims(body, { subject: body['sub'] ?? body['client_id'], expiresAt: exp, digest, mapping: opts.mapping })
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
    if (!takeRequest()) return failure('introspection_busy', `more than ${opts.ratePerSecond} tokens per second to introspect`)
    // If the request that started it is cancelled the mark must not stick: it expires with the timeout.
    inFlight.set(digest, now() + opts.timeoutMs + pollMs)
    try {
      return await introspect(token, digest)
    } finally {
      inFlight.delete(digest)
    }
  }
}
