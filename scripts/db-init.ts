// npm run db:init — applies migrations/ (each once, recorded in d1_migrations
// as `wrangler d1 migrations apply` records them) and the deterministic demo
// data to the local D1. Idempotent: applied migrations are skipped and the data
// is INSERT OR IGNORE, so running it again changes nothing. A local D1 made
// from the former schema.sql (no d1_migrations) takes 0001_initial.sql as a
// no-op (IF NOT EXISTS) and records it. A local D1 made before audit
// chains existed (audit_log without `chain`) is migrated first: its tables are
// moved aside, the migrations create the new ones, and the old rows are copied in
// as chain 0 (scripts/sql/audit-chains-*.sql; an interrupted run resumes).
// An audit_log made before refusal rows were compacted lacks the columns
// 0001_initial.sql lists after `chain`: the lines of
// scripts/sql/audit-refusal-columns.sql that add a missing one are run (NULL
// in every old row, which keeps every old hash valid, see canonicalRow).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { demoDataStatements } from './demo-data.ts'
import { devEnv, migrationFiles, persistArgs, ROOT, wrangler } from './lib/dev-env.ts'

const ADD_COLUMN = /^ALTER TABLE audit_log ADD COLUMN (\w+) .*;$/

/**
 * Applies the migrations not yet recorded in d1_migrations, in order, each
 * followed by its record, in one `wrangler d1 execute --file`, recorded
 * exactly as `wrangler d1 migrations apply` records them (same table, same
 * columns), so either tool sees the other's work. `execute` instead of
 * `migrations apply` keeps db:init on the one wrangler command it uses
 * throughout (each wrangler start costs a second or two).
 */
async function applyMigrations(base: string[], tmp: string): Promise<void> {
  const out = await wrangler([...base, '--json', '--command', `${MIGRATIONS_TABLE}; SELECT name FROM d1_migrations`], { quiet: true })
  const applied = new Set(((JSON.parse(out) as { results: { name: string }[] }[]).at(-1)?.results ?? []).map((r) => r.name))
  const pending = migrationFiles().filter((file) => !applied.has(basename(file)))
  if (pending.length === 0) return
  const step = join(tmp, 'migrations-pending.sql')
  writeFileSync(step, pending.map((file) => `${readFileSync(file, 'utf8').trimEnd()}\nINSERT INTO d1_migrations (name) VALUES ('${basename(file).replaceAll("'", "''")}');\n`).join(''))
  await wrangler([...base, '--file', step], { quiet: true })
  for (const file of pending) console.log(`migration ${basename(file)} applied`)
}

/** Adds to an existing audit_log the columns 0001_initial.sql lists after `chain` that it lacks. */
async function addMissingAuditColumns(base: string[]): Promise<void> {
  const info = await wrangler([...base, '--json', '--command', "SELECT name FROM pragma_table_info('audit_log')"], { quiet: true })
  const present = new Set(((JSON.parse(info) as { results: { name: string }[] }[])[0]?.results ?? []).map((c) => c.name))
  const additions = readFileSync(join(ROOT, 'scripts/sql/audit-refusal-columns.sql'), 'utf8').split('\n')
    .flatMap((line) => {
      const column = ADD_COLUMN.exec(line)?.[1]
      return column === undefined || present.has(column) ? [] : [{ column, line }]
    })
  for (const { line } of additions) await wrangler([...base, '--command', line], { quiet: true })
  if (additions.length > 0) console.log(`audit_log: added ${additions.map((a) => a.column).join(', ')}`)
}

/** wrangler's own d1_migrations table (wrangler d1 migrations, applyD1Migrations). */
const MIGRATIONS_TABLE = 'CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)'

export async function initLocalDatabase(env = devEnv()): Promise<void> {
  const tmp = join(env.dir, 'tmp')
  mkdirSync(tmp, { recursive: true })
  const dataFile = join(tmp, 'demo-data.sql')
  writeFileSync(dataFile, demoDataStatements().join('\n') + '\n')
  const base = ['d1', 'execute', 'DB', '--local', ...persistArgs(env), '--yes']
  const tables = await wrangler([...base, '--json', '--command', "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ('audit_log', 'audit_log_unchained')"], { quiet: true })
  const found = (JSON.parse(tables) as { results: { name: string; sql: string }[] }[])[0]?.results ?? []
  const old = found.find((t) => t.name === 'audit_log' && !/\bchain\b/.test(t.sql))
  if (old) await wrangler([...base, '--file', join(ROOT, 'scripts/sql/audit-chains-1-detach.sql')], { quiet: true })
  // before the migrations: 0002 copies audit_log with every column 0001 lists
  if (found.some((t) => t.name === 'audit_log' && t !== old)) await addMissingAuditColumns(base)
  await applyMigrations(base, tmp)
  if (old || found.some((t) => t.name === 'audit_log_unchained')) {
    await wrangler([...base, '--file', join(ROOT, 'scripts/sql/audit-chains-3-copy.sql')], { quiet: true })
    console.log('audit_log migrated to audit chains: existing rows are chain 0')
  }
  await wrangler([...base, '--file', dataFile], { quiet: true })
  // statistics for execute_query's work budget (src/sql/plan-budget.ts); the cron refreshes them
  await wrangler([...base, '--command', 'PRAGMA optimize=0x10002'], { quiet: true })
  const out = await wrangler([...base, '--json', '--command', 'SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM products) AS products'], { quiet: true })
  const counts = (JSON.parse(out) as { results: Record<string, number>[] }[])[0]?.results[0]
  console.log(`local D1 ready: ${JSON.stringify(counts)}`)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  initLocalDatabase().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  })
}
