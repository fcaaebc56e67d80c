// Schema changes as D1 migrations (migrations/, wrangler.toml migrations_dir):
// the test setup applies them as wrangler does (applyD1Migrations records each
// in d1_migrations); applying them again changes nothing; and a database that
// already holds the tables (created from the former schema.sql) takes
// 0001_initial.sql as a no-op and records it.
import { applyD1Migrations } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { applyMigrations, testEnv } from '../support/test-env.ts'

const E = testEnv(env)

async function snapshot(db: D1Database) {
  const tables = (await db.prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'index', 'trigger') AND name NOT LIKE 'sqlite_%' ORDER BY name").all<{ name: string }>()).results.map((r) => r.name)
  const migrations = (await db.prepare('SELECT id, name, applied_at FROM d1_migrations ORDER BY id').all()).results
  const rows = await db.prepare('SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM audit_log) AS audit').first()
  return { tables, migrations, rows }
}

describe('migrations', () => {
  it('are each applied once, in name order, and recorded', async () => {
    const names = (await E.DB.prepare('SELECT name FROM d1_migrations ORDER BY id').all<{ name: string }>()).results.map((r) => r.name)
    expect(names).toEqual(E.TEST_MIGRATIONS.map((m) => m.name))
    expect(names[0]).toBe('0001_initial.sql')
    expect([...names].sort()).toEqual(names)
  })

  it('change nothing when applied again', async () => {
    const before = await snapshot(E.DB)
    await applyD1Migrations(E.DB, E.TEST_MIGRATIONS)
    expect(await snapshot(E.DB)).toEqual(before)
  })

  it('take a database made from the former schema.sql: 0001 is a no-op, then recorded', async () => {
    const db = E.TENANT_DB
    await db.prepare('DROP TABLE IF EXISTS d1_migrations').run()
    for (const query of E.TEST_MIGRATIONS[0]!.queries) await db.prepare(query).run()
    await db.prepare("INSERT OR IGNORE INTO products (id, sku, name, description, category, price_cents, stock, created_at) VALUES ('prd_m', 'M-1', 'kept', 'row from before', 'test', 1, 1, '2026-01-01')").run()
    await applyMigrations(db)
    expect((await db.prepare('SELECT name FROM d1_migrations ORDER BY id').all<{ name: string }>()).results.map((r) => r.name)).toEqual(E.TEST_MIGRATIONS.map((m) => m.name))
    expect(await db.prepare("SELECT name FROM products WHERE id = 'prd_m'").first('name')).toBe('kept')
  })
})
