// Claim mapping (src/auth/claims.ts) and its settings (src/config.ts):
// where scopes and roles are read from, which IdP names are which policy
// roles, and every malformed setting refused at start, naming the setting.
import { describe, expect, it } from 'vitest'
import { mapRoles, notAccessToken, parseClaimPath, PRESETS, readGrant, type ClaimMapping } from '../../src/auth/claims.ts'
import { parseConfig } from '../../src/config.ts'

const JWKS = JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', kid: 'k1' }] })
const BASE = { AUTH_ISSUER: 'https://issuer.test', AUTH_AUDIENCE: 'https://bastion.test/mcp', AUTH_JWKS: JWKS }

function mappingOf(settings: Record<string, string>): ClaimMapping {
  const result = parseConfig({ ...BASE, ...settings })
  if (!result.ok) throw new Error(`${result.setting}: ${result.problem}`)
  return result.config.claims
}

describe('claim paths', () => {
  it('splits a dotted path into claim names', () => {
    expect(parseClaimPath('realm_access.roles')).toEqual(['realm_access', 'roles'])
  })
  it('keeps a namespaced claim (a URL) as one name', () => {
    expect(parseClaimPath('https://mcp.example.com/roles')).toEqual(['https://mcp.example.com/roles'])
  })
  it('refuses a path with an empty segment', () => {
    expect(parseClaimPath('realm_access..roles')).toBeUndefined()
    expect(parseClaimPath('.roles')).toBeUndefined()
  })
})

describe('readGrant', () => {
  const native = mappingOf({})

  it('reads the native form: a space-separated scope and a single role', () => {
    expect(readGrant({ scope: 'customers:read  orders:read', role: 'editor' }, native)).toEqual({ ok: true, scopes: ['customers:read', 'orders:read'], idpRoles: ['editor'] })
  })
  it('reads nested role arrays (Keycloak realm_access.roles)', () => {
    const keycloak = mappingOf({ AUTH_PRESET: 'keycloak', AUTH_ROLE_MAP: 'mcp-editor=editor' })
    expect(readGrant({ scope: 'profile customers:read', realm_access: { roles: ['offline_access', 'mcp-editor'] } }, keycloak)).toMatchObject({ ok: true, idpRoles: ['offline_access', 'mcp-editor'] })
  })
  it('merges several scope claims without duplicates (Auth0 scope + permissions)', () => {
    const auth0 = mappingOf({ AUTH_PRESET: 'auth0' })
    expect(readGrant({ scope: 'openid customers:read', permissions: ['customers:read', 'orders:read'] }, auth0)).toEqual({ ok: true, scopes: ['openid', 'customers:read', 'orders:read'], idpRoles: [] })
  })
  it('reads nothing from an absent or null claim', () => {
    expect(readGrant({ role: null }, native)).toEqual({ ok: true, scopes: [], idpRoles: [] })
  })
  it('does not walk into arrays or inherited properties', () => {
    const mapping = mappingOf({ AUTH_ROLE_CLAIMS: 'realm_access.roles,constructor.name,__proto__.x', AUTH_ROLE_MAP: 'admin=admin' })
    expect(readGrant({ realm_access: [{ roles: ['admin'] }] }, mapping)).toEqual({ ok: true, scopes: [], idpRoles: [] })
    expect(readGrant(JSON.parse('{"__proto__": {"x": "admin"}}') as Record<string, unknown>, mapping)).toEqual({ ok: true, scopes: [], idpRoles: ['admin'] })
  })
  const arrays = mappingOf({ AUTH_SCOPE_CLAIMS: 'scope,scp', AUTH_ROLE_CLAIMS: 'role,roles', AUTH_ROLE_MAP: 'admin=admin' })
  it.each([
    ['a scope claim that is a number', { scope: 5 }],
    ['a scope claim that is an array (RFC 9068: one space-separated string)', { scope: ['customers:read'] }],
    ['a role claim that is an array (one role name)', { role: ['admin'] }],
    ['an scp array holding an object', { scp: ['customers:read', { a: 1 }] }],
    ['a roles claim that is an object', { roles: { name: 'admin' } }],
    ['a roles claim with more than 256 values', { roles: Array.from({ length: 257 }, (_, i) => `r${i}`) }],
    ['a role name longer than 256 characters', { role: 'a'.repeat(257) }],
  ])('refuses %s, naming the claim', (_name, claims) => {
    const result = readGrant(claims, arrays)
    expect(result.ok).toBe(false)
    expect(!result.ok && result.detail).toMatch(/^(scope|scp|role|roles) /)
  })
})

describe('mapRoles', () => {
  it('without AUTH_ROLE_MAP, an IdP name is the role of the same name', () => {
    expect(mapRoles(['editor', 'Everyone'], mappingOf({}))).toEqual(['editor', 'Everyone'])
  })
  it('with AUTH_ROLE_MAP, only mapped names count, even one spelled like a policy role', () => {
    const mapping = mappingOf({ AUTH_ROLE_MAP: 'MCP.Editor=editor, MCP Readers=read-only' })
    expect(mapRoles(['admin', 'MCP.Editor', 'MCP Readers', 'Other'], mapping)).toEqual(['editor', 'read-only'])
  })
})

describe('presets', () => {
  it.each(Object.entries(PRESETS).filter(([name]) => name !== 'native'))('AUTH_PRESET=%s sets the scope and role claims it documents', (name, preset) => {
    const mapping = mappingOf({ AUTH_PRESET: name, ...(preset.roleClaims === 'none' ? {} : { AUTH_ROLE_MAP: 'G=editor' }) })
    expect(mapping.scopeClaims.map((p) => p.join('.')).join(',')).toBe(preset.scopeClaims)
    expect(mapping.roleClaims.map((p) => p.join('.')).join(',') || 'none').toBe(preset.roleClaims)
  })

  it('AUTH_ROLE_CLAIMS=none reads no roles, and then needs no map', () => {
    expect(mappingOf({ AUTH_PRESET: 'okta', AUTH_ROLE_CLAIMS: 'none' }).roleClaims).toEqual([])
  })
  it('an explicit AUTH_ROLE_CLAIMS overrides the preset', () => {
    const mapping = mappingOf({ AUTH_PRESET: 'auth0', AUTH_ROLE_CLAIMS: 'https://mcp.example.com/roles', AUTH_ROLE_MAP: 'MCP Editor=editor' })
    expect(mapping.roleClaims).toEqual([['https://mcp.example.com/roles']])
  })
  it('accepts extra audiences beside AUTH_AUDIENCE, which stays first', () => {
    const result = parseConfig({ ...BASE, AUTH_EXTRA_AUDIENCES: '6e74172b-be56-4843-9ff4-e66a39bb12e3, api://bastion' })
    expect(result.ok && result.config.audiences).toEqual(['https://bastion.test/mcp', '6e74172b-be56-4843-9ff4-e66a39bb12e3', 'api://bastion'])
  })
})

describe('parseConfig refuses a malformed identity-provider setting, naming it', () => {
  const INTROSPECTION = { AUTH_INTROSPECTION_URL: 'https://issuer.test/introspect', AUTH_INTROSPECTION_CLIENT_ID: 'bastion', AUTH_INTROSPECTION_CLIENT_SECRET: 's3cret' }
  it.each([
    ['an unknown preset', { AUTH_PRESET: 'ping' }, 'AUTH_PRESET', /one of entra, keycloak, okta, auth0/],
    ['a claim path with an empty segment', { AUTH_ROLE_CLAIMS: 'realm_access.' }, 'AUTH_ROLE_CLAIMS', /not a claim path/],
    ['no scope claim at all', { AUTH_SCOPE_CLAIMS: ' , ' }, 'AUTH_SCOPE_CLAIMS', /names no claim/],
    ['a claim read for both scopes and roles', { AUTH_ROLE_CLAIMS: 'scope' }, 'AUTH_ROLE_CLAIMS', /also a scope claim/],
    ['a role map entry without =', { AUTH_ROLE_MAP: 'MCP.Admin' }, 'AUTH_ROLE_MAP', /idp-name=policy-role/],
    ['a role map to a role the policy lacks', { AUTH_ROLE_MAP: 'MCP.Admin=superuser' }, 'AUTH_ROLE_MAP', /not a policy role/],
    ['a name mapped twice', { AUTH_ROLE_MAP: 'G=admin,G=editor' }, 'AUTH_ROLE_MAP', /mapped twice/],
    ['a role map with no role claim to read', { AUTH_PRESET: 'auth0', AUTH_ROLE_MAP: 'G=admin' }, 'AUTH_ROLE_MAP', /AUTH_ROLE_CLAIMS names no claim/],
    ["an IdP's groups read as roles without a map (a group called admin would be admin)", { AUTH_PRESET: 'okta' }, 'AUTH_ROLE_MAP', /required when roles come from groups/],
    ['realm roles read as roles with an empty map', { AUTH_PRESET: 'keycloak', AUTH_ROLE_MAP: '' }, 'AUTH_ROLE_MAP', /required when roles come from realm_access.roles/],
    ['a custom role claim without a map', { AUTH_ROLE_CLAIMS: 'roles' }, 'AUTH_ROLE_MAP', /required/],
    ['neither keys nor introspection', { AUTH_JWKS: '' }, 'AUTH_JWKS_URL', /AUTH_INTROSPECTION_URL/],
    ['an introspection URL over plain http', { ...INTROSPECTION, AUTH_INTROSPECTION_URL: 'http://issuer.test/introspect' }, 'AUTH_INTROSPECTION_URL', /https/],
    ['an introspection URL without client id', { ...INTROSPECTION, AUTH_INTROSPECTION_CLIENT_ID: '' }, 'AUTH_INTROSPECTION_CLIENT_ID', /required/],
    ['an introspection URL without client secret', { ...INTROSPECTION, AUTH_INTROSPECTION_CLIENT_SECRET: undefined }, 'AUTH_INTROSPECTION_CLIENT_SECRET', /required/],
    ['a zero cache TTL', { ...INTROSPECTION, AUTH_INTROSPECTION_CACHE_SECONDS: '0' }, 'AUTH_INTROSPECTION_CACHE_SECONDS', /from 1 to 3600/],
    ['a cache TTL over an hour (revocation would take that long)', { ...INTROSPECTION, AUTH_INTROSPECTION_CACHE_SECONDS: '86400' }, 'AUTH_INTROSPECTION_CACHE_SECONDS', /from 1 to 3600/],
    ['a rate over 1000 per second', { ...INTROSPECTION, AUTH_INTROSPECTION_RATE: '5000' }, 'AUTH_INTROSPECTION_RATE', /from 1 to 1000/],
    ['a timeout above 30 s', { ...INTROSPECTION, AUTH_INTROSPECTION_TIMEOUT_MS: '60000' }, 'AUTH_INTROSPECTION_TIMEOUT_MS', /30000/],
    ['a rate that is not a number', { ...INTROSPECTION, AUTH_INTROSPECTION_RATE: 'many' }, 'AUTH_INTROSPECTION_RATE', /from 1 to 1000/],
    ['an introspection setting without the URL', { AUTH_INTROSPECTION_RATE: '5' }, 'AUTH_INTROSPECTION_RATE', /AUTH_INTROSPECTION_URL is not/],
  ])('refuses %s', (_name, settings, setting, problem) => {
    const bindings: Record<string, unknown> = { ...BASE, ...settings }
    for (const [k, v] of Object.entries(bindings)) if (v === undefined) delete bindings[k]
    const result = parseConfig(bindings)
    expect(result).toMatchObject({ ok: false, setting })
    expect(!result.ok && result.problem).toMatch(problem)
  })

  it('accepts introspection alone, without any key set', () => {
    const result = parseConfig({ ...BASE, AUTH_JWKS: undefined, ...INTROSPECTION })
    expect(result.ok && result.config.jwks).toBeUndefined()
    expect(result.ok && result.config.introspection).toMatchObject({ clientId: 'bastion', cacheSeconds: 60, timeoutMs: 3000, ratePerSecond: 50 })
  })
})

describe('ID tokens and other non-access tokens are refused', () => {
  it.each([
    ['a Keycloak ID token (typ ID)', {}, { typ: 'ID' }],
    ['a Keycloak refresh token (typ Refresh)', {}, { typ: 'Refresh' }],
    ['under keycloak, a token without typ Bearer', { AUTH_PRESET: 'keycloak', AUTH_ROLE_MAP: 'x=admin' }, { scope: 'customers:read' }],
    ['under entra, an ID token (no azp, no appid) even with app roles', { AUTH_PRESET: 'entra', AUTH_ROLE_MAP: 'Orders.Admin=admin' }, { roles: ['Orders.Admin'], nonce: 'n' }],
  ])('%s', (_name, settings, claims) => {
    expect(notAccessToken(claims, mappingOf(settings))).toMatch(/typ|azp/)
  })
  it.each([
    ['a Keycloak access token', { AUTH_PRESET: 'keycloak', AUTH_ROLE_MAP: 'x=admin' }, { typ: 'Bearer' }],
    ['an Entra v2.0 access token (azp)', { AUTH_PRESET: 'entra', AUTH_ROLE_MAP: 'x=admin' }, { azp: 'c44b4083' }],
    ['an Entra v1.0 access token (appid)', { AUTH_PRESET: 'entra', AUTH_ROLE_MAP: 'x=admin' }, { appid: 'c44b4083' }],
    ['a native token without typ', {}, {}],
  ])('accepts %s', (_name, settings, claims) => {
    expect(notAccessToken(claims, mappingOf(settings))).toBeUndefined()
  })
})
