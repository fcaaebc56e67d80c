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
  /** test/fixtures/shipments/0002_shipments.sql, split into statements */
  TEST_SHIPMENTS_MIGRATION: string[]
  /** An empty database of its own (row-scope differential test). */
  TENANT_DB: D1Database
}

export function testEnv(env: unknown): TestEnv {
  return env as TestEnv
}
