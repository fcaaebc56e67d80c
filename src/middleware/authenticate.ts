// Access-token authentication. The token is taken from the Authorization
// header only (a token in the query string or body is ignored), verified by
// auth/verify.ts, and turned into c.var.principal. Failure: 401 with the RFC
// 9728 challenge; the precise reason goes to the log, never to the client.
//
// DPoP (RFC 9449, AUTH_DPOP; README "DPoP"): `Authorization: DPoP <token>`
// with a `DPoP` proof header, verified by auth/dpop.ts, jti once-only in the
// DpopReplay object. Whatever the mode, a token bound to a key (`cnf.jkt`) is
// only accepted with a valid proof by that key, never as a Bearer token.
//   off       the DPoP scheme is not accepted (bound tokens are thus refused)
//   allowed   DPoP-bound tokens with proofs, and plain bearer tokens
//   required  DPoP-bound tokens with proofs only
import { createMiddleware } from 'hono/factory'
import type { Config } from '../config.ts'
import type { AppEnv } from '../env.ts'
import { AppError, unauthorized } from '../errors.ts'
import { createTokenVerifier } from '../auth/verify.ts'
import type { TokenVerifier } from '../auth/token.ts'
import { createDpopVerifier, type DpopVerifier, type ReplayStore } from '../auth/dpop.ts'
import { DPOP_CHALLENGE, dpopRefusalChallenge, type DpopChallengeError } from '../auth/dpop-challenge.ts'
import { durableReplayStore } from '../auth/dpop-store.ts'
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
    verifier = createTokenVerifier({
      issuer: config.issuer,
      audiences: config.audiences,
      algorithms: config.algorithms,
      jwks: config.jwks,
      mapping: config.claims,
      introspection: config.introspection,
      requireAtJwt: config.requireAtJwt,
    })
    verifiers.set(config, verifier)
  }
  return verifier
}

const dpopVerifiers = new WeakMap<object, DpopVerifier>()

/** 401: the Bearer challenge, plus `DPoP algs` unless DPoP is off. */
function challenge(config: Config, tokenSent: boolean, detail?: string): AppError {
  const error = unauthorized(config.resourceMetadataUrl, tokenSent, detail, START_SCOPES)
  if (config.dpop === 'off') return error
  return new AppError('unauthorized', {
    message: error.message,
    headers: { 'www-authenticate': `${error.headers['www-authenticate']}, ${DPOP_CHALLENGE}` },
    ...(detail ? { detail } : {}),
  })
}

/** 401 for a DPoP refusal: `DPoP error=…` first (see auth/dpop-challenge.ts). */
function dpopRefusal(config: Config, error: DpopChallengeError, detail: string): AppError {
  const description = error === 'invalid_dpop_proof' ? 'invalid DPoP proof' : 'invalid token'
  return new AppError('unauthorized', {
    message: description,
    headers: { 'www-authenticate': dpopRefusalChallenge(error, description, config.resourceMetadataUrl, START_SCOPES) },
    detail,
  })
}

export const authenticate = (makeReplay: (env: Env) => ReplayStore = (env) => durableReplayStore(env.DPOP_REPLAY)) =>
  createMiddleware<AppEnv>(async function authenticate(c, next) {
    const { config, log } = c.var
    const header = c.req.header('authorization')
    const match = header?.match(/^(Bearer|DPoP)[ \t]+([^\s]+)[ \t]*$/i)
    const scheme = match?.[1]?.toLowerCase() as 'bearer' | 'dpop' | undefined
    if (!match || (scheme === 'dpop' && config.dpop === 'off')) {
      log('info', 'auth_missing', { scheme: header ? header.split(' ')[0]?.slice(0, 16) : null })
      throw challenge(config, header !== undefined)
    }
    if (scheme === 'bearer' && config.dpop === 'required') {
      log('info', 'auth_refused', { code: 'dpop_required', detail: 'AUTH_DPOP=required and the token came as Bearer' })
      throw dpopRefusal(config, 'invalid_token', 'bearer token under AUTH_DPOP=required')
    }
    const accessToken = match[2]!
    const result = await verifierFor(config)(accessToken)
    if (!result.ok) {
      // The issuer's keys or its introspection endpoint cannot be reached: not
      // the caller's fault, so not a 401 (which would make clients throw away a
      // good token). Fail closed.
      if (result.code === 'keys_unavailable') {
        log('error', 'auth_keys_unavailable', { detail: result.detail })
        throw new AppError('unavailable', { message: 'authorization keys are temporarily unavailable; retry later', headers: { 'retry-after': '30' } })
      }
      if (result.code === 'introspection_unavailable' || result.code === 'introspection_busy') {
        log(result.code === 'introspection_busy' ? 'warn' : 'error', 'auth_introspection_unavailable', { code: result.code, detail: result.detail })
        throw new AppError('unavailable', {
          message: 'token introspection is temporarily unavailable; retry later',
          headers: { 'retry-after': result.code === 'introspection_busy' ? '1' : '5' },
        })
      }
      log('info', 'auth_refused', { code: result.code, detail: result.detail })
      throw challenge(config, true, result.code)
    }
    const { token } = result

    if (token.jkt === undefined && scheme === 'dpop') {
      log('info', 'auth_refused', { code: 'dpop_unbound_token', detail: 'DPoP scheme with a token that has no cnf.jkt' })
      throw dpopRefusal(config, 'invalid_token', 'DPoP scheme with an unbound token')
    }
    if (token.jkt !== undefined && scheme === 'bearer') {
      // The authorization server bound this token to a key: without a proof
      // by that key it is a stolen token as far as we can tell.
      log('info', 'auth_refused', { code: 'dpop_bound_as_bearer', detail: 'token with cnf.jkt presented as Bearer' })
      throw config.dpop === 'off' ? challenge(config, true, 'dpop_bound_as_bearer') : dpopRefusal(config, 'invalid_token', 'DPoP-bound token presented as Bearer')
    }
    if (token.jkt !== undefined) {
      let verifyProof = dpopVerifiers.get(c.env)
      if (!verifyProof) {
        verifyProof = createDpopVerifier({ replay: makeReplay(c.env) })
        dpopVerifiers.set(c.env, verifyProof)
      }
      const proof = await verifyProof({ proof: c.req.header('dpop'), method: c.req.method, url: c.req.url, accessToken, jkt: token.jkt })
      if (!proof.ok) {
        if (proof.code === 'replay_unavailable') {
          log('error', 'dpop_replay_unavailable', { detail: proof.detail })
          throw new AppError('unavailable', { message: 'DPoP proof check is temporarily unavailable; retry later', headers: { 'retry-after': '5' }, detail: proof.detail })
        }
        log('info', 'dpop_refused', { code: proof.code, detail: proof.detail })
        throw dpopRefusal(config, 'invalid_dpop_proof', proof.code)
      }
    }

    c.set('principal', {
      sub: token.sub,
      scopes: effectiveScopes(POLICY, token),
      roles: token.roles.filter((role) => POLICY.roles.has(role)),
      tokenId: token.tokenId,
      claims: token.claims,
      clientId: token.clientId,
    })
    await next()
  })
