// Applies migrations/ and the demo data to the test D1 before each test file,
// then analyzes it. Both are idempotent, so a file that shares storage with
// another is safe.
import { env } from 'cloudflare:workers'
import { beforeAll } from 'vitest'
import { applyMigrations, testEnv } from './test-env.ts'

beforeAll(async () => {
  const { DB, TEST_DEMO_DATA } = testEnv(env)
  await applyMigrations(DB)
  await DB.batch(TEST_DEMO_DATA.map((s) => DB.prepare(s)))
  // statistics for the work budget (src/sql/plan-budget.ts), as db:init and the cron keep them
  await DB.prepare('PRAGMA optimize=0x10002').run()
})
