// `npm run dev` against your own identity provider: AUTH_ISSUER + AUTH_JWKS_URL
// from the shell replace the development issuer and key (scripts/lib/dev-env.ts).
// In the e2e project because it imports Node-only scripts; it starts no process.
import { describe, expect, it } from 'vitest'
import { devVars, type DevEnv, type DevKeys } from '../../scripts/lib/dev-env.ts'

const env: DevEnv = { dir: '/tmp/x', isDefault: false, port: 8787, origin: 'http://127.0.0.1:8787', issuer: 'http://127.0.0.1:8787', audience: 'http://127.0.0.1:8787/mcp', persistTo: undefined }
const keys = { privateJwk: { kid: 'k', alg: 'ES256' }, publicJwks: { keys: [{ kty: 'EC', kid: 'k' }] } } as unknown as DevKeys

describe('devVars with an identity provider from the shell', () => {
  it('uses the development key and issuer by default', () => {
    const vars = devVars(env, keys, {})
    expect(vars).toMatchObject({ AUTH_ISSUER: env.issuer, AUTH_AUDIENCE: env.audience })
    expect(JSON.parse(vars['AUTH_JWKS']!)).toEqual(keys.publicJwks)
    expect(vars['AUTH_JWKS_URL']).toBeUndefined()
  })

  it('replaces the inline key with AUTH_JWKS_URL and the issuer with AUTH_ISSUER (exactly one key source)', () => {
    const vars = devVars(env, keys, { AUTH_ISSUER: 'https://idp.example', AUTH_JWKS_URL: 'https://idp.example/jwks', AUTH_JWKS_COOLDOWN_SECONDS: '5', AUTH_DPOP: 'required' })
    expect(vars).toMatchObject({ AUTH_ISSUER: 'https://idp.example', AUTH_JWKS_URL: 'https://idp.example/jwks', AUTH_AUDIENCE: env.audience, AUTH_JWKS_COOLDOWN_SECONDS: '5', AUTH_DPOP: 'required' })
    expect(vars['AUTH_JWKS']).toBeUndefined()
  })

  it('refuses AUTH_JWKS_URL without AUTH_ISSUER rather than trusting a foreign key set for the dev issuer', () => {
    expect(() => devVars(env, keys, { AUTH_JWKS_URL: 'https://idp.example/jwks' })).toThrow(/AUTH_ISSUER/)
  })

  it('replaces the inline key with AUTH_INTROSPECTION_URL and its settings (opaque tokens only)', () => {
    const vars = devVars(env, keys, { AUTH_ISSUER: 'https://idp.example', AUTH_INTROSPECTION_URL: 'https://idp.example/introspect', AUTH_INTROSPECTION_CLIENT_ID: 'rs', AUTH_INTROSPECTION_CLIENT_SECRET: 's', AUTH_PRESET: 'okta' })
    expect(vars).toMatchObject({ AUTH_ISSUER: 'https://idp.example', AUTH_INTROSPECTION_URL: 'https://idp.example/introspect', AUTH_INTROSPECTION_CLIENT_ID: 'rs', AUTH_INTROSPECTION_CLIENT_SECRET: 's', AUTH_PRESET: 'okta' })
    expect(vars['AUTH_JWKS']).toBeUndefined()
  })

  it('ignores AUTH_ISSUER alone (the dev key would not match it)', () => {
    expect(devVars(env, keys, { AUTH_ISSUER: 'https://idp.example' })['AUTH_ISSUER']).toBe(env.issuer)
  })
})
