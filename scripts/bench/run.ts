// npm run bench — runs every benchmark once, one after another, and prints
// their lines under a header naming the machine, so numbers are always
// reported with the machine they came from. Speed is measured here, never in
// timed tests.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { ROOT } from '../lib/dev-env.ts'

const BENCHES = [
  ['SQL guard (parse + check + rewrite, per query)', 'sql-guard.ts'],
  ['execute_query checks before a statement runs (guard + EXPLAIN gate + work budget, per query)', 'sql-budget.ts'],
  ['token estimator and output cap', 'estimate.ts'],
  ['audit cost per call (waitUntil vs await, atomic mutation)', 'audit.ts'],
  ['end to end over HTTP (wrangler dev)', 'http.ts'],
  ['DPoP: proof verifier, and Bearer vs DPoP through the Worker', 'dpop.ts'],
  ['identity: JWT verify vs opaque-token introspection (cached, uncached), alone and through the Worker', 'auth.ts'],
  ['declared tools vs hand-written, row-scoped vs unscoped execute_query (inside workerd)', 'declared.ts'],
  ['rate and concurrency limits (check cost per backend; throughput on vs off)', 'limits.ts'],
] as const

const cpu = cpus()[0]?.model ?? 'unknown cpu'
console.log(`# mcp-bastion bench — ${new Date().toISOString()}`)
console.log(`# machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ${process.platform}/${process.arch}`)
let failed = 0
for (const [title, file] of BENCHES) {
  const path = join(ROOT, 'scripts', 'bench', file)
  if (!existsSync(path)) continue
  console.log(`\n## ${title}`)
  const run = spawnSync(join(ROOT, 'node_modules', '.bin', 'tsx'), [path], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } })
  const lines = `${run.stdout}`.split('\n').filter((l) => l.trim() && !l.startsWith('Using '))
  console.log(lines.join('\n'))
  if (run.status !== 0) {
    failed++
    console.error(run.stderr)
  }
}
process.exit(failed ? 1 : 0)
