// WWW-Authenticate challenges for DPoP (RFC 9449 §7.1), beside the RFC 6750 /
// RFC 9728 Bearer challenge of errors.ts. Pure string building.
import { authParam } from '../errors.ts'
import { DPOP_ALGORITHMS } from './dpop.ts'

/** The `algs` auth-param: the proof algorithms this server verifies. */
export const DPOP_ALGS = DPOP_ALGORITHMS.join(' ')

/** `DPoP algs="…"`: appended to every 401 unless AUTH_DPOP=off. */
export const DPOP_CHALLENGE = `DPoP algs=${authParam(DPOP_ALGS)}`

export type DpopChallengeError = 'invalid_dpop_proof' | 'invalid_token'

/**
 * A DPoP refusal: the `DPoP` challenge first, carrying the error (clients
 * read the first `error=`), then the Bearer challenge's discovery parameters
 * (`resource_metadata`, `scope`) so a client can still find the PRM.
 */
export function dpopRefusalChallenge(error: DpopChallengeError, description: string, resourceMetadataUrl: string, scopes: readonly string[]): string {
  const bearer = [`resource_metadata=${authParam(resourceMetadataUrl)}`]
  if (scopes.length > 0) bearer.push(`scope=${authParam(scopes.join(' '))}`)
  return `DPoP error="${error}", error_description=${authParam(description)}, algs=${authParam(DPOP_ALGS)}, Bearer ${bearer.join(', ')}`
}
