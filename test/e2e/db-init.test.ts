// `npm run db:init` (scripts/db-init.ts) on a local D1 state folder, as a
// developer runs it: a fresh folder gets every migration recorded in
// d1_migrations and the demo data, and a second run changes nothing; a folder
// created the way the project did before migrations (0001_initial.sql's text
// run with `wrangler d1 execute --file`, no d1_migrations) upgrades in place:
// its rows are kept and 0001 is recorded as applied.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { migrationFiles, ROOT, WRANGLER } from '../../scripts/lib/dev-env.ts'
import { run } from './support/run.ts'

const work = mkdtempSync(join(tmpdir(), 'bastion-db-init-'))
const QUIET = { WRANGLER_SEND_METRICS: 'false', CI: '1' }
afterAll(() => rmSync(work, { recursive: true, force: true }))

async function dbInit(dir: string): Promise<string> {
  const result = await run(join(ROOT, 'node_modules/.bin/tsx'), ['scripts/db-init.ts'], { cwd: ROOT, env: { ...QUIET, BASTION_DEV_DIR: dir }, timeoutMs: 120_000 })
  if (result.code !== 0) throw new Error(`db:init failed (${result.code}):\n${result.stdout}\n${result.stderr}`)
  return result.stdout
}

async function query<T>(dir: string, command: string): Promise<T[]> {
  const result = await run(WRANGLER, ['d1', 'execute', 'DB', '--local', '--persist-to', join(dir, 'state'), '--yes', '--json', '--command', command], { cwd: ROOT, env: QUIET })
  if (result.code !== 0) throw new Error(`wrangler d1 execute failed:\n${result.stderr}`)
  return (JSON.parse(result.stdout) as { results: T[] }[])[0]!.results
}

const migrationNames = () => migrationFiles().map((f) => f.slice(f.lastIndexOf('/') + 1))

describe('npm run db:init', () => {
  it('applies every migration once on a fresh folder, and a second run changes nothing', async () => {
    const dir = join(work, 'fresh')
    expect(await dbInit(dir)).toMatch(/local D1 ready: \{"customers":60,"orders":300,"products":120\}/)
    const first = await query<{ id: number; name: string; applied_at: string }>(dir, 'SELECT id, name, applied_at FROM d1_migrations ORDER BY id')
    expect(first.map((m) => m.name)).toEqual(migrationNames())
    await dbInit(dir)
    expect(await query(dir, 'SELECT id, name, applied_at FROM d1_migrations ORDER BY id')).toEqual(first)
    expect(await query(dir, 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 300 }])
  })

  it('upgrades a folder made before migrations: rows kept, 0001 recorded', async () => {
    const dir = join(work, 'old')
    const initial = migrationFiles()[0]!
    const made = await run(WRANGLER, ['d1', 'execute', 'DB', '--local', '--persist-to', join(dir, 'state'), '--yes', '--file', initial], { cwd: ROOT, env: QUIET })
    expect(made.code).toBe(0)
    await query(dir, "INSERT INTO products (id, sku, name, description, category, price_cents, stock, created_at) VALUES ('prd_old', 'OLD-1', 'from before', 'kept', 'test', 1, 1, '2026-01-01')")
    await dbInit(dir)
    expect((await query<{ name: string }>(dir, 'SELECT name FROM d1_migrations ORDER BY id')).map((m) => m.name)).toEqual(migrationNames())
    expect(await query(dir, "SELECT name FROM products WHERE id = 'prd_old'")).toEqual([{ name: 'from before' }])
  })
})
