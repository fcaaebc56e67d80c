// Bearer-token authentication. The token is taken from the Authorization
// header only (a token in the query string or body is ignored), verified by
// auth/verify.ts, and turned into c.var.principal. Failure: 401 with the RFC
// 9728 challenge; the precise reason goes to the log, never to the client.
import { createMiddleware } from 'hono/factory'
import type { Config } from '../config.ts'
import type { AppEnv } from '../env.ts'
import { AppError, unauthorized } from '../errors.ts'
import { createTokenVerifier, type TokenVerifier } from '../auth/verify.ts'
import { effectiveScopes } from '../policy/decide.ts'
import { POLICY, startScopes } from '../policy/policy.ts'

/** The 401 challenge's `scope` (the rule is in policy.ts). */
const START_SCOPES = startScopes(POLICY)

// One verifier per configuration, so keys are imported and the remote JWKS
// cache is created once per isolate.
const verifiers = new WeakMap<Config, TokenVerifier>()
function verifierFor(config: Config): TokenVerifier {
  let verifier = verifiers.get(config)
  if (!verifier) {
    verifier = createTokenVerifier({ issuer: config.issuer, audience: config.audience, algorithms: config.algorithms, jwks: config.jwks, requireAtJwt: config.requireAtJwt })
    verifiers.set(config, verifier)
  }
  return verifier
}

export const authenticate = () =>
  createMiddleware<AppEnv>(async function authenticate(c, next) {
    const { config, log } = c.var
    const header = c.req.header('authorization')
    const match = header?.match(/^Bearer[ \t]+([^\s]+)[ \t]*$/i)
    if (!match) {
      log('info', 'auth_missing', { scheme: header ? header.split(' ')[0]?.slice(0, 16) : null })
      throw unauthorized(config.resourceMetadataUrl, header !== undefined, undefined, START_SCOPES)
    }
    const result = await verifierFor(config)(match[1]!)
    if (!result.ok) {
      if (result.code === 'keys_unavailable') {
        // The issuer's keys cannot be fetched: not the caller's fault, so not a
        // 401 (which would make clients throw away a good token). Fail closed.
        log('error', 'auth_keys_unavailable', { detail: result.detail })
        throw new AppError('unavailable', { message: 'authorization keys are temporarily unavailable; retry later', headers: { 'retry-after': '30' } })
      }
      log('info', 'auth_refused', { code: result.code, detail: result.detail })
      throw unauthorized(config.resourceMetadataUrl, true, result.code, START_SCOPES)
    }
    const { token } = result
    c.set('principal', {
      sub: token.sub,
      scopes: effectiveScopes(POLICY, { scopes: token.scopes, role: token.role }),
      role: token.role,
      tokenId: token.tokenId,
      clientId: token.clientId,
    })
    await next()
  })
