// npm run db:init — applies schema.sql and the deterministic demo data to the
// local D1. Idempotent: the schema uses IF NOT EXISTS and the data INSERT OR
// IGNORE, so running it again changes nothing.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { demoDataStatements } from './demo-data.ts'
import { devEnv, persistArgs, ROOT, wrangler } from './lib/dev-env.ts'

export async function initLocalDatabase(env = devEnv()): Promise<void> {
  const tmp = join(env.dir, 'tmp')
  mkdirSync(tmp, { recursive: true })
  const dataFile = join(tmp, 'demo-data.sql')
  writeFileSync(dataFile, demoDataStatements().join('\n') + '\n')
  const base = ['d1', 'execute', 'DB', '--local', ...persistArgs(env), '--yes']
  await wrangler([...base, '--file', join(ROOT, 'schema.sql')], { quiet: true })
  await wrangler([...base, '--file', dataFile], { quiet: true })
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
