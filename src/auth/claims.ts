// Claim mapping: where an identity provider puts scopes and roles in a token
// (or an introspection response), and which of its role or group names are
// which policy roles. Pure; parsed once from configuration (config.ts), then
// applied to every verified token by `readGrant`.
//
//   scopeClaims  claims holding scopes: a space-separated string or an array
//                of strings (`scope`, Entra's `scp`, Okta's `scp` array,
//                Auth0's `permissions`); all of them are read and merged
//   roleClaims   claims holding roles: a string or an array of strings
//                (`role`, Entra's `roles`, Keycloak's `realm_access.roles`,
//                Okta's `groups`)
//   roleMap      IdP name → policy role. Names it does not map grant nothing,
//                like an unknown role in the native form. Required whenever
//                roles come from another claim than the native `role`
//                (config.ts): an IdP's groups and realm roles are shared by
//                the whole organisation, so a group that happens to be
//                called `admin` must not become this server's admin. Only
//                for `role` is an IdP name equal to a policy role that role.
//   preset       for `isAccessToken`: the marks by which the provider's
//                access tokens differ from its ID tokens, which carry the
//                same issuer, keys and (for an app that also signs users
//                in) the same audience.
//
// A claim path is claim names joined by `.`; a path that starts with a URL
// scheme (`https://example.com/roles`, the namespaced claims Auth0 and Okta
// require) is a single claim name. A claim that is present but of the wrong
// type refuses the token (`invalid_claim`), rather than being read as empty.
// The two native claims keep their defined types wherever they are read:
// `scope` is one space-separated string (RFC 9068 §2.2.3, RFC 8693 §4.2) and
// `role` one role name (INTERFACE.md); every other claim may also be an array.

export type ClaimPath = readonly string[]

export interface ClaimMapping {
  scopeClaims: readonly ClaimPath[]
  roleClaims: readonly ClaimPath[]
  roleMap: ReadonlyMap<string, string> | undefined
  preset: PresetName | 'native'
  /** Claims kept on the principal for declared tools' bound parameters and row scope (config.ts collects them). */
  boundClaims?: readonly ClaimPath[]
}

export const PRESET_NAMES = ['entra', 'keycloak', 'okta', 'auth0'] as const
export type PresetName = (typeof PRESET_NAMES)[number]

/**
 * Defaults of AUTH_SCOPE_CLAIMS / AUTH_ROLE_CLAIMS per AUTH_PRESET (README
 * "Connect your identity provider"); `none` reads no roles.
 */
export const PRESETS: Record<PresetName | 'native', { scopeClaims: string; roleClaims: string }> = {
  native: { scopeClaims: 'scope', roleClaims: 'role' },
  entra: { scopeClaims: 'scp', roleClaims: 'roles' },
  keycloak: { scopeClaims: 'scope', roleClaims: 'realm_access.roles' },
  okta: { scopeClaims: 'scp', roleClaims: 'groups' },
  auth0: { scopeClaims: 'scope,permissions', roleClaims: 'none' },
}

/** Keycloak's own token-kind claim (`typ` in the payload) for tokens that are not access tokens. */
const NOT_ACCESS_TYPES = new Set(['id', 'refresh', 'offline', 'logout', 'serialized-id'])

/**
 * Undefined when the claims can be an access token, else why not:
 *   - any provider: a payload `typ` of ID, Refresh, Offline or Logout (Keycloak's marks);
 *   - keycloak: the payload `typ` must be `Bearer`;
 *   - entra: `azp` (v2.0) or `appid` (v1.0) must be present; Entra puts them
 *     in access tokens only, never in ID tokens.
 */
export function notAccessToken(claims: Readonly<Record<string, unknown>>, mapping: ClaimMapping): string | undefined {
  const typ = claims['typ']
  if (typeof typ === 'string' && NOT_ACCESS_TYPES.has(typ.toLowerCase())) return `typ claim ${typ} is not an access token`
  if (mapping.preset === 'keycloak' && typ !== 'Bearer') return `typ claim ${String(typ)} is not Bearer (AUTH_PRESET=keycloak)`
  if (mapping.preset === 'entra' && typeof claims['azp'] !== 'string' && typeof claims['appid'] !== 'string') return 'neither azp nor appid: an Entra ID token, not an access token (AUTH_PRESET=entra)'
  return undefined
}

const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i
/** Top-level claims that are a single string by definition. */
const STRING_ONLY = new Set(['scope', 'role'])
const MAX_CLAIM_VALUES = 256
const MAX_VALUE_LENGTH = 256

/** `realm_access.roles` → ['realm_access', 'roles']; undefined when a segment is empty. */
export function parseClaimPath(text: string): ClaimPath | undefined {
  const path = URL_SCHEME.test(text) ? [text] : text.split('.')
  return path.every((segment) => segment.length > 0) ? path : undefined
}

export function formatClaimPath(path: ClaimPath): string {
  return path.join('.')
}

function claimAt(claims: Readonly<Record<string, unknown>>, path: ClaimPath): unknown {
  let value: unknown = claims
  for (const segment of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, segment)) return undefined
    value = (value as Record<string, unknown>)[segment]
  }
  return value
}

type Values = { ok: true; values: string[] } | { ok: false; detail: string }

/** A claim's strings: `split` for a space-separated string (scopes), whole for a role name. */
function valuesOf(claims: Readonly<Record<string, unknown>>, path: ClaimPath, split: boolean): Values {
  const value = claimAt(claims, path)
  const name = formatClaimPath(path)
  if (value === undefined || value === null) return { ok: true, values: [] }
  const values = typeof value === 'string' ? (split ? value.split(' ').filter(Boolean) : [value]) : value
  const one = split ? 'a space-separated string' : 'a string'
  if (typeof value !== 'string' && path.length === 1 && STRING_ONLY.has(name)) return { ok: false, detail: `${name} must be ${one}` }
  if (!Array.isArray(values) || !values.every((v): v is string => typeof v === 'string')) {
    return { ok: false, detail: `${name} must be ${one} or an array of strings` }
  }
  if (values.length > MAX_CLAIM_VALUES) return { ok: false, detail: `${name} has more than ${MAX_CLAIM_VALUES} values` }
  if (values.some((v) => v.length > MAX_VALUE_LENGTH)) return { ok: false, detail: `${name} has a value longer than ${MAX_VALUE_LENGTH} characters` }
  return { ok: true, values }
}

type GrantResult = { ok: true; scopes: string[]; idpRoles: string[] } | { ok: false; detail: string }

/** The token's scopes and its IdP role names, before the policy sees them. */
export function readGrant(claims: Readonly<Record<string, unknown>>, mapping: ClaimMapping): GrantResult {
  const scopes: string[] = []
  for (const path of mapping.scopeClaims) {
    const read = valuesOf(claims, path, true)
    if (!read.ok) return read
    scopes.push(...read.values)
  }
  const idpRoles: string[] = []
  for (const path of mapping.roleClaims) {
    const read = valuesOf(claims, path, false)
    if (!read.ok) return read
    idpRoles.push(...read.values)
  }
  return { ok: true, scopes: [...new Set(scopes)], idpRoles: [...new Set(idpRoles)] }
}

/**
 * The bound claims the token has, by path text: a string of 1..256
 * characters or a finite number. Any other value (an array, an object, an
 * empty or longer string) counts as absent: a parameter or row-scope rule
 * bound to it then refuses the call.
 */
export function readBound(claims: Readonly<Record<string, unknown>>, paths: readonly ClaimPath[]): Map<string, string | number> {
  const out = new Map<string, string | number>()
  for (const path of paths) {
    const value = claimAt(claims, path)
    if ((typeof value === 'string' && value.length > 0 && value.length <= MAX_VALUE_LENGTH) || (typeof value === 'number' && Number.isFinite(value))) {
      out.set(formatClaimPath(path), value)
    }
  }
  return out
}

/** IdP role names → role names for the policy: through the map when there is one, else as they are (native `role` only). */
export function mapRoles(idpRoles: readonly string[], mapping: ClaimMapping): string[] {
  if (!mapping.roleMap) return [...idpRoles]
  const out = new Set<string>()
  for (const name of idpRoles) {
    const role = mapping.roleMap.get(name)
    if (role !== undefined) out.add(role)
  }
  return [...out]
}
