// The bindings the integration tests see: the Worker's own Env plus the
// test-only values vitest.config.ts adds (private keys, schema, demo data).
export interface TestEnv extends Env {
  AUTH_ISSUER: string
  AUTH_AUDIENCE: string
  AUTH_JWKS: string
  ALLOWED_ORIGINS: string
  TEST_PRIVATE_JWKS: string
  TEST_SCHEMA: string[]
  TEST_DEMO_DATA: string[]
}

export function testEnv(env: unknown): TestEnv {
  return env as TestEnv
}
