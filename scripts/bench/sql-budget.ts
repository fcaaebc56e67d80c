// Cost of what execute_query checks before a statement runs, per query, on a
// local D1 (miniflare through getPlatformProxy, demo data, analyzed):
//   - the guard alone (parse + check + rewrite: CPU in the Worker);
//   - the work budget's pricing alone (pricePlan over the plan and sizes D1
//     returned: CPU in the Worker);
//   - all of it end to end (checkBeforeRun: guard, then the EXPLAIN gate's two
//     statements, EXPLAIN QUERY PLAN and the sizes, in parallel), next to one
//     `SELECT 1` round trip, because from Node every local D1 statement is an
//     HTTP round trip to workerd that dominates; in a Worker, D1 is a network hop.
//   npx tsx scripts/bench/sql-budget.ts
// Median and p95 over the shared legit table, the attack table, and the
// over-budget products the budget exists for.
import { POLICY } from '../../src/policy/policy.ts'
import { checkBeforeRun, type ExecuteOptions } from '../../src/sql/execute.ts'
import { guardQuery } from '../../src/sql/guard.ts'
import { pricePlan, readTableStats, type PlanRow } from '../../src/sql/plan-budget.ts'
import { ATTACKS, BUSINESS_TABLES, LEGIT } from '../../test/support/sql-cases.ts'
import { withLocalD1 } from './local-d1.ts'

const ROUNDS = Number(process.env['BENCH_ITERATIONS'] ?? 10)
const opts: ExecuteOptions = { allowedTables: BUSINESS_TABLES, maxRows: 500, maxBytes: 256 * 1024, maxVisitedRows: POLICY.maxQueryVisitedRows }
const PRODUCTS = [
  'SELECT count(*) FROM orders a, orders b, orders c, orders d WHERE a.id <> b.id',
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10000) SELECT count(*) FROM c, orders a, orders b',
  'SELECT id FROM orders a WHERE (SELECT count(*) FROM orders b, customers c, products p WHERE b.total_cents + c.rowid + p.rowid > a.total_cents) > 0',
]

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

async function main(): Promise<void> {
  await withLocalD1(async (db) => {
    await db.prepare('PRAGMA optimize=0x10002').run()
    const sets = [
      ['legit', LEGIT.map((c) => c.sql)],
      ['attack', ATTACKS.map((c) => c.sql)],
      ['over-budget products', PRODUCTS],
    ] as const
    const roundTrip: number[] = []
    for (let i = 0; i < 50; i++) {
      const t = performance.now()
      await db.prepare('SELECT 1').all()
      roundTrip.push((performance.now() - t) * 1000)
    }
    roundTrip.sort((a, b) => a - b)
    console.log(`local D1 round trip (SELECT 1, reference) median: ${percentile(roundTrip, 50).toFixed(0)} µs, p95 ${percentile(roundTrip, 95).toFixed(0)} µs`)
    for (const [name, queries] of sets) {
      // the plans and sizes once, for timing the pricing alone
      const inputs: { plan: PlanRow[]; stats: Awaited<ReturnType<typeof readTableStats>>; guard: Extract<ReturnType<typeof guardQuery>, { ok: true }> }[] = []
      for (const q of queries) {
        await checkBeforeRun(db, q, opts) // warm-up
        const guard = guardQuery(q, opts)
        if (!guard.ok) continue
        try {
          const plan = await db.prepare(`EXPLAIN QUERY PLAN ${guard.sql}`).all<PlanRow>()
          inputs.push({ plan: plan.results, stats: await readTableStats(db, guard.tables), guard })
        } catch {
          // a query SQLite itself rejects has no plan to price
        }
      }
      const all: number[] = []
      const guardOnly: number[] = []
      const pricing: number[] = []
      let refused = 0
      for (let round = 0; round < ROUNDS; round++) {
        for (const q of queries) {
          const t = performance.now()
          const result = await checkBeforeRun(db, q, opts)
          all.push((performance.now() - t) * 1000)
          if (!result.ok) refused++
        }
      }
      for (let round = 0; round < ROUNDS * 100; round++) {
        for (const q of queries) {
          const g = performance.now()
          guardQuery(q, opts)
          guardOnly.push((performance.now() - g) * 1000)
        }
        for (const input of inputs) {
          const p = performance.now()
          pricePlan(input.plan, input.stats, input.guard)
          pricing.push((performance.now() - p) * 1000)
        }
      }
      for (const list of [all, guardOnly, pricing]) list.sort((a, b) => a - b)
      const line = (list: number[], digits: number) => `${percentile(list, 50).toFixed(digits)} / ${percentile(list, 95).toFixed(digits)} µs`
      console.log(
        `sql checks ${name} (${queries.length} queries, ${refused / ROUNDS} refused): median / p95 guard ${line(guardOnly, 1)}, pricing ${pricing.length > 0 ? line(pricing, 2) : '-'} (${inputs.length} plans), end to end on local D1 ${line(all, 0)}`,
      )
    }
  })
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
