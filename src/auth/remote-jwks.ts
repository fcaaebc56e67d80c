// The issuer's remote JWKS (AUTH_JWKS_URL), cached per isolate. Pure: no
// framework, `fetch` and the clock are injectable.
//
// Why not jose's createRemoteJWKSet: its cooldown runs from the last
// *successful* fetch, and on Workers it does not share an in-flight fetch
// between requests. So while the issuer's JWKS endpoint is down every request
// fetches again, and a burst of tokens with unknown `kid`s after the cooldown
// starts one fetch per request. Here every fetch *attempt*, failed or not,
// starts the cooldown, and an attempt in flight is waited for (by polling the
// shared state: a promise is never shared across requests on Workers):
//
//   - keys older than `cacheMaxAgeMs` (or none yet): fetched before use;
//   - a token whose `kid` is not in the set: the set is fetched again at most
//     once per `cooldownMs`, whatever the number or rate of such tokens (a
//     flood of garbage `kid`s costs the issuer one request per cooldown);
//   - the endpoint failing (HTTP error, bad JSON, timeout, network): the
//     request fails with KeysUnavailableError (a 503 upstream, never a pass);
//     the next attempt waits for the cooldown, so an outage costs the issuer
//     one request per cooldown too. Keys already cached and still fresh keep
//     verifying during an outage.
import { sleep } from '../sleep.ts'
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose'

export interface RemoteJwksOptions {
  url: URL
  /** Minimum time between two fetch attempts triggered by an unknown kid or after a failure. */
  cooldownMs: number
  /** Keys older than this are fetched again before use. */
  cacheMaxAgeMs: number
  /** One fetch may take this long. */
  timeoutMs: number
  fetch?: typeof fetch
  now?: () => number
  /** How long to sleep between looks at an attempt in flight (tests). */
  pollMs?: number
}

/** The issuer's keys could not be obtained: not the token's fault. */
export class KeysUnavailableError extends Error {
  override readonly name = 'KeysUnavailableError'
}

type LocalSet = ReturnType<typeof createLocalJWKSet>

export interface RemoteKeySet extends JWTVerifyGetKey {
  /** Fetch attempts so far (for the log and tests). */
  readonly attempts: number
}


export function createRemoteKeySet(opts: RemoteJwksOptions): RemoteKeySet {
  if (!(opts.cooldownMs > 0)) throw new Error('createRemoteKeySet: cooldownMs must be positive')
  if (!(opts.cacheMaxAgeMs >= opts.cooldownMs)) throw new Error('createRemoteKeySet: cacheMaxAgeMs must be at least cooldownMs')
  const doFetch = opts.fetch ?? ((input, init) => fetch(input, init))
  const now = opts.now ?? Date.now
  const pollMs = opts.pollMs ?? 20
  const href = opts.url.href

  let local: LocalSet | undefined
  let fetchedAt = Number.NEGATIVE_INFINITY
  let attemptedAt = Number.NEGATIVE_INFINITY
  let inFlightUntil = Number.NEGATIVE_INFINITY
  let lastFailure: string | undefined
  let attempts = 0

  async function fetchOnce(): Promise<void> {
    attempts++
    attemptedAt = now()
    // If the request that started it is cancelled the flag must not stick: it expires with the timeout.
    inFlightUntil = attemptedAt + opts.timeoutMs + pollMs
    try {
      let response: Response
      try {
        response = await doFetch(href, {
          method: 'GET',
          redirect: 'manual',
          headers: { accept: 'application/json, application/jwk-set+json' },
          signal: AbortSignal.timeout(opts.timeoutMs),
        })
      } catch (error) {
        throw new KeysUnavailableError(`JWKS fetch failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`)
      }
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => {})
        throw new KeysUnavailableError(`JWKS endpoint answered HTTP ${response.status}`)
      }
      let json: unknown
      try {
        json = await response.json()
      } catch (error) {
        throw new KeysUnavailableError(`JWKS response is not JSON: ${error instanceof Error ? error.message : String(error)}`)
      }
      let next: LocalSet
      try {
        next = createLocalJWKSet(json as JSONWebKeySet)
      } catch (error) {
        throw new KeysUnavailableError(`JWKS response is not a JWK set: ${error instanceof Error ? error.message : String(error)}`)
      }
      local = next
      fetchedAt = now()
      lastFailure = undefined
    } catch (error) {
      lastFailure = error instanceof Error ? error.message : String(error)
      throw error
    } finally {
      inFlightUntil = Number.NEGATIVE_INFINITY
    }
  }

  /**
   * One attempt, shared: joins an attempt in flight (started by any request),
   * else starts one unless the cooldown since the last attempt is running.
   * The outcome is in `local`/`fetchedAt` or `lastFailure`. The checks run
   * synchronously, before the first await, so concurrent callers see the
   * attempt another one has just started.
   */
  async function refresh(): Promise<void> {
    if (now() < inFlightUntil) {
      while (now() < inFlightUntil) await sleep(pollMs)
      return
    }
    if (now() - attemptedAt < opts.cooldownMs) return
    await fetchOnce().catch(() => {})
  }

  const isFresh = () => local !== undefined && now() - fetchedAt < opts.cacheMaxAgeMs

  const getKey = async (protectedHeader: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]) => {
    if (!isFresh()) {
      await refresh()
      if (!isFresh()) throw new KeysUnavailableError(lastFailure ?? 'no JWKS fetched yet')
    }
    try {
      return await local!(protectedHeader, token)
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error
      const before = fetchedAt
      await refresh()
      if (fetchedAt !== before) return await local!(protectedHeader, token)
      // The set could not be refreshed: an unknown kid cannot be told from a
      // new key, so this is an outage (503), not a bad token.
      if (lastFailure !== undefined) throw new KeysUnavailableError(lastFailure)
      throw error
    }
  }
  return Object.defineProperty(getKey, 'attempts', { get: () => attempts, enumerable: true }) as RemoteKeySet
}
