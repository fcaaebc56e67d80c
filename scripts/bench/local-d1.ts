// A seeded local D1 for the micro-benchmarks: miniflare through wrangler's
// getPlatformProxy, migrations/ and the demo data, in a fresh temp dir.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getPlatformProxy, unstable_splitSqlQuery } from 'wrangler'
import { demoDataStatements } from '../demo-data.ts'
import { migrationFiles, ROOT } from '../lib/dev-env.ts'

/** Runs `work` over a fresh seeded local D1, then disposes of it. */
export async function withLocalD1<T>(work: (db: D1Database) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-bench-'))
  process.env['WRANGLER_SEND_METRICS'] = 'false'
  const proxy = await getPlatformProxy<{ DB: D1Database }>({ configPath: join(ROOT, 'wrangler.toml'), persist: { path: dir } })
  try {
    const db = proxy.env.DB
    for (const file of migrationFiles()) for (const q of unstable_splitSqlQuery(readFileSync(file, 'utf8'))) await db.prepare(q).run()
    await db.batch(demoDataStatements().map((s) => db.prepare(s)))
    return await work(db)
  } finally {
    await proxy.dispose()
    rmSync(dir, { recursive: true, force: true })
  }
}
