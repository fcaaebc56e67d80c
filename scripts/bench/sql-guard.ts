// Cost of the SQL guard (parse + walk + rewrite) per query, in microseconds,
// over the shared legit and attack tables of test/support/sql-cases.ts.
//   npx tsx scripts/bench/sql-guard.ts [iterations]
// Warms up, then times `iterations` calls per table (round-robin over its
// queries) and prints one line per metric: median and p95 for each table.
import { guardQuery } from '../../src/sql/guard.ts'
import { ATTACKS, BUSINESS_TABLES, LEGIT } from '../../test/support/sql-cases.ts'

const iterations = Number(process.argv[2] ?? 2000)
const opts = { allowedTables: BUSINESS_TABLES, maxRows: 500 }
const WARMUP = 3000

/**
 * The seed's validation, as the baseline: three substring checks. Cheap, but
 * it lets `SELECT 1; COMMIT; UPDATE …` through and refuses `LIKE '%drop%'`.
 */
function seedFilter(q: string): boolean {
  const l = q.toLowerCase()
  return !l.includes('drop') && !l.includes('delete') && l.startsWith('select')
}

function measure(queries: readonly string[], check: (q: string) => unknown = (q) => guardQuery(q, opts)): number[] {
  for (let i = 0; i < WARMUP; i++) check(queries[i % queries.length]!)
  const samples: number[] = []
  for (let i = 0; i < iterations; i++) {
    const query = queries[i % queries.length]!
    const start = performance.now()
    check(query)
    samples.push((performance.now() - start) * 1000)
  }
  return samples.sort((a, b) => a - b)
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

for (const [name, queries] of [
  ['legit', LEGIT.map((c) => c.sql)],
  ['attack', ATTACKS.map((c) => c.sql)],
] as const) {
  const samples = measure(queries)
  console.log(`sql-guard ${name} median: ${percentile(samples, 50).toFixed(1)} µs (${queries.length} queries, ${iterations} iterations)`)
  console.log(`sql-guard ${name} p95: ${percentile(samples, 95).toFixed(1)} µs (${queries.length} queries, ${iterations} iterations)`)
}

// Baseline side by side: what the seed's filter costs, and what it gets wrong
// on the same tables.
const legit = LEGIT.map((c) => c.sql)
const attacks = ATTACKS.map((c) => c.sql)
const seedSamples = measure(legit, seedFilter)
const seedMissed = attacks.filter(seedFilter).length
const seedRefusedLegit = legit.filter((q) => !seedFilter(q)).length
const guardMissed = attacks.filter((q) => guardQuery(q, opts).ok).length
const guardRefusedLegit = legit.filter((q) => !guardQuery(q, opts).ok).length
console.log(`seed substring filter (baseline) median: ${percentile(seedSamples, 50).toFixed(2)} µs; lets through ${seedMissed}/${attacks.length} attacks, refuses ${seedRefusedLegit}/${legit.length} legit queries (guard: ${guardMissed} and ${guardRefusedLegit})`)
