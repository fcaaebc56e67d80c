// Cost of auditing one tools/call, on a local D1 (miniflare through
// wrangler's getPlatformProxy, in a scratch folder):
//   record   — building the row: redaction, capping, SHA-256 of the output
//              (this is all a read pays on its critical path: the append
//              runs after the response, in waitUntil)
//   append   — appendAudit awaited: head read + sealed INSERT, one row per
//              D1 round trip (the pre-sequencer write path; the Worker now
//              hands rows to the AuditSequencer, measured under load by
//              scripts/bench/audit-load.ts)
//   mutation — update with its audit row in one batch (what the sequencer's
//              commit runs), against the same update alone (db.batch): the
//              price of atomicity
// Prints median and p95 in µs per call.
import { auditRecord, type CallFacts } from '../../src/audit/record.ts'
import { appendAudit, commitWithAudit } from '../../src/audit/store.ts'
import { withLocalD1 } from './local-d1.ts'

const ITERATIONS = Number(process.env['BENCH_ITERATIONS'] ?? 300)

function stats(samples: number[]): { median: number; p95: number } {
  const s = [...samples].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)]!, p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]! }
}

async function measure(name: string, fn: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 20; i++) await fn(-1 - i)
  const samples: number[] = []
  for (let i = 0; i < ITERATIONS; i++) {
    const t = performance.now()
    await fn(i)
    samples.push((performance.now() - t) * 1000)
  }
  const { median, p95 } = stats(samples)
  console.log(`audit ${name.padEnd(34)} median ${median.toFixed(1).padStart(8)} µs  p95 ${p95.toFixed(1).padStart(8)} µs  (n=${ITERATIONS})`)
}

async function main() {
  await withLocalD1(async (db) => {
    const customer = await db.prepare("SELECT * FROM customers WHERE id = 'cus_001'").first()
    const output = JSON.stringify({ customer })
    const facts: CallFacts = {
      requestId: crypto.randomUUID(),
      startedAt: Date.now(),
      principal: { sub: 'bench', scopes: new Set(['customers:read']), roles: ['admin'], tokenId: 'sha256:0011223344556677', clientId: undefined, claims: new Map() },
      method: 'tools/call',
      toolName: 'get_customer',
      toolArguments: { customerId: 'cus_001' },
      client: { name: 'bench', version: '1' },
    }
    const record = await auditRecord(facts, { outcome: 'ok', httpStatus: 200, outputJson: output })

    await measure('record (waitUntil: critical path)', () => auditRecord(facts, { outcome: 'ok', httpStatus: 200, outputJson: output }))
    await measure('append awaited (head + insert)', () => appendAudit(db, record))

    const statuses = ['paid', 'pending'] as const
    const update = (i: number) =>
      db.prepare("UPDATE orders SET status = ?1, updated_at = ?2 WHERE id = 'ord_0001'").bind(statuses[Math.abs(i) % 2], new Date().toISOString())
    await measure('mutation alone (db.batch)', (i) => db.batch([update(i)]))
    await measure('mutation + audit row (one batch)', (i) => commitWithAudit(db, [update(i)], record))
  })
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
