// Mints access tokens for the integration tests with the test-only private
// keys that vitest.config.ts generated (the Worker trusts their public half).
import { env } from 'cloudflare:workers'
import { importJWK, SignJWT, type JWK, type JWTPayload } from 'jose'
import { testEnv } from './test-env.ts'

export interface MintOptions {
  sub?: string
  role?: string
  scope?: string
  alg?: 'RS256' | 'ES256'
  /** Seconds until expiry (negative: already expired). */
  ttl?: number
  claims?: JWTPayload
  /** Omit these registered claims. */
  omit?: ('iss' | 'aud' | 'exp' | 'sub')[]
  header?: Record<string, unknown>
}

export async function mintToken(opts: MintOptions = {}): Promise<string> {
  const e = testEnv(env)
  const alg = opts.alg ?? 'RS256'
  const jwks = JSON.parse(e.TEST_PRIVATE_JWKS) as { keys: (JWK & { kid: string })[] }
  const jwk = jwks.keys.find((k) => k.alg === alg)!
  const key = await importJWK(jwk, alg)
  const now = Math.floor(Date.now() / 1000)
  const omit = new Set(opts.omit ?? [])
  const payload: JWTPayload = { ...opts.claims }
  if (opts.role !== undefined) payload['role'] = opts.role
  if (opts.scope !== undefined) payload['scope'] = opts.scope
  const jwt = new SignJWT(payload).setProtectedHeader({ alg, kid: jwk.kid, typ: 'JWT', ...opts.header }).setIssuedAt(now)
  if (!omit.has('iss')) jwt.setIssuer(e.AUTH_ISSUER)
  if (!omit.has('aud')) jwt.setAudience(e.AUTH_AUDIENCE)
  if (!omit.has('sub')) jwt.setSubject(opts.sub ?? 'agent-1')
  if (!omit.has('exp')) jwt.setExpirationTime(now + (opts.ttl ?? 3600))
  return jwt.sign(key)
}
