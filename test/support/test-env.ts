import { applyD1Migrations, type D1Migration } from 'cloudflare:test'
import { env } from 'cloudflare:workers'

// The bindings the integration tests see: the Worker's own Env plus the
// test-only values vitest.config.ts adds (private keys, schema, demo data).
export interface TestEnv extends Env {
  AUTH_ISSUER: string
  AUTH_AUDIENCE: string
  AUTH_JWKS: string
  ALLOWED_ORIGINS: string
  TEST_PRIVATE_JWKS: string
  /** migrations/, read by readD1Migrations (vitest.config.ts) */
  TEST_MIGRATIONS: D1Migration[]
  TEST_DEMO_DATA: string[]
  /** test/fixtures/shipments/0002_shipments.sql, split into statements */
  TEST_SHIPMENTS_MIGRATION: string[]
  /** An empty database of its own (row-scope differential test). */
  TENANT_DB: D1Database
}

export function testEnv(env: unknown): TestEnv {
  return env as TestEnv
}

/**
 * Applies migrations/ to `db` as wrangler does (recorded in d1_migrations).
 * Test files that share storage may apply them at once: the one that loses
 * the race on d1_migrations' unique name (its batch rolled back) retries and
 * then finds them applied.
 */
export async function applyMigrations(db: D1Database): Promise<void> {
  const { TEST_MIGRATIONS } = testEnv(env)
  try {
    await applyD1Migrations(db, TEST_MIGRATIONS)
  } catch {
    await applyD1Migrations(db, TEST_MIGRATIONS)
  }
}
