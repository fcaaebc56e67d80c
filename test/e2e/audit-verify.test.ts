// `npm run audit:verify` (scripts/audit-verify.ts) against a real local D1
// state folder, as an operator runs it: migrations/ applied with wrangler, a
// valid chain of sealed rows inserted, then each kind of tampering done with
// plain SQL on a fresh copy of that state. The CLI must exit 0 on the intact
// chain and exit 1 naming the first broken seq otherwise, for every chain.
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AUDIT_COLUMNS, GENESIS, sealRow, type AuditRow } from '../../src/audit/chain.ts'
import { run, type RunResult } from './support/run.ts'
import { migrationFiles } from '../../scripts/lib/dev-env.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const WRANGLER = join(ROOT, 'node_modules/.bin/wrangler')
const QUIET = { WRANGLER_SEND_METRICS: 'false', CI: '1' }

let work: string
let base: string
const rows: AuditRow[] = []

type Scenario = 'intact' | 'edited' | 'deleted' | 'swapped' | 'pruned' | 'chains'
/** What `npm run audit:verify` printed for each scenario's copy of the state. */
const outcome = {} as Record<Scenario, Promise<RunResult>>

/** One SQL literal: integers as is, NULL, or a single-quoted string. */
function lit(value: unknown): string {
  if (value === null || value === undefined) return 'NULL'
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value)
  return `'${String(value).replaceAll("'", "''")}'`
}

async function d1(persistTo: string, ...args: string[]): Promise<RunResult> {
  const result = await run(WRANGLER, ['d1', 'execute', 'DB', '--local', '--persist-to', persistTo, '--yes', ...args], { cwd: ROOT, env: QUIET })
  if (result.code !== 0) throw new Error(`wrangler d1 execute failed (${result.code}):\n${result.stdout}\n${result.stderr}`)
  return result
}

const sql = (persistTo: string, command: string) => d1(persistTo, '--command', command)

function verify(persistTo: string): Promise<RunResult> {
  // One wrangler call for the chains and checkpoints, one per page of each chain;
  // six copies are verified side by side on a shared 2-core machine.
  return run('npm', ['run', '--silent', 'audit:verify', '--', '--persist-to', persistTo], { cwd: ROOT, env: QUIET, timeoutMs: 110_000 })
}

let copies = 0
/** A fresh copy of the intact state. */
function freshCopy(): string {
  const dir = join(work, `copy-${++copies}`)
  cpSync(base, dir, { recursive: true })
  return dir
}

function insertRow(row: AuditRow, chain = 0): string {
  return `INSERT INTO audit_log (${AUDIT_COLUMNS.join(', ')}, chain) VALUES (${AUDIT_COLUMNS.map((c) => lit(row[c])).join(', ')}, ${chain});`
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'bastion-audit-verify-'))
  base = join(work, 'base')
  for (const file of migrationFiles()) await d1(base, '--file', file)
  let head = { ...GENESIS }
  const start = Date.parse('2026-03-01T10:00:00.000Z')
  for (let i = 0; i < 5; i += 1) {
    const row = await sealRow({
      ts: new Date(start + i * 1000).toISOString(),
      request_id: `req-${i + 1}`,
      sub: i % 2 === 0 ? 'alice' : 'bob',
      token_id: `jti-${i + 1}`,
      client_name: 'e2e',
      client_version: '1.0.0',
      method: 'tools/call',
      tool: i === 3 ? 'update_order' : 'get_customer',
      outcome: i === 2 ? 'tool_error' : 'ok',
      http_status: 200,
      duration_ms: 5 + i,
      input_json: `{"customerId":"cus_00${i + 1}","note":"it's fine"}`,
      output_bytes: i === 2 ? null : 100 + i,
      output_sha256: i === 2 ? null : 'ab'.repeat(32),
      output_excerpt: i === 2 ? null : '{"customer":{"email":"[redacted]"}}',
      error_code: i === 2 ? 'not_found' : null,
    }, head)
    rows.push(row)
    head = { seq: row.seq, hash: row.hash }
  }
  await sql(base, rows.map((r) => insertRow(r)).join('\n'))

  // Each scenario tampers with its own fresh copy of the intact state; they
  // run side by side (each wrangler call costs about a second).
  const moveContent = (target: number, from: AuditRow) =>
    `UPDATE audit_log SET ${AUDIT_COLUMNS.filter((c) => c !== 'seq').map((c) => `${c} = ${lit(from[c])}`).join(', ')} WHERE seq = ${target};`
  const tampering: Record<Scenario, string | undefined> = {
    intact: undefined,
    edited: "UPDATE audit_log SET sub = 'mallory' WHERE seq = 3",
    deleted: 'DELETE FROM audit_log WHERE seq = 3',
    swapped: `${moveContent(2, rows[3]!)}\n${moveContent(4, rows[1]!)}`,
    pruned: `DELETE FROM audit_log WHERE seq <= 2;\nINSERT INTO audit_checkpoint (chain, last_seq, last_hash, pruned_at) VALUES (0, 2, ${lit(rows[1]!.hash)}, '2026-06-01T00:00:00.000Z');`,
    // AUDIT_CHAINS > 1: chain 0 intact, the same rows again as chain 3 (its own seq 1..5), row 4 of chain 3 edited.
    chains: `${rows.map((r) => insertRow(r, 3)).join('\n')}\nUPDATE audit_log SET outcome = 'error' WHERE chain = 3 AND seq = 4;`,
  }
  for (const [scenario, tamper] of Object.entries(tampering) as [Scenario, string | undefined][]) {
    const dir = freshCopy()
    const result = (async () => {
      if (tamper !== undefined) await sql(dir, tamper)
      return verify(dir)
    })()
    result.catch(() => undefined) // reported by the test that awaits it
    outcome[scenario] = result
  }
})

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true })
})

describe('npm run audit:verify', () => {
  it('exits 0 and reports "audit chain OK" on an intact chain', async () => {
    const result = await outcome.intact
    expect(result.stdout.trim(), result.stderr).toBe('chain 0: audit chain OK: 5 rows (seq 1..5)')
    expect(result.code).toBe(0)
  })

  it('exits 1 naming seq 3 when row 3 was edited (its sub changed)', async () => {
    const result = await outcome.edited
    expect(result.stdout).toContain('chain 0: audit chain BROKEN at seq 3: hash_mismatch')
    expect(result.code).toBe(1)
  })

  it('exits 1 naming the gap when a middle row was deleted', async () => {
    const result = await outcome.deleted
    expect(result.stdout).toContain('chain 0: audit chain BROKEN at seq 3: gap (seq 3 missing; next row present is seq 4)')
    expect(result.code).toBe(1)
  })

  it('exits 1 naming the first of two rows whose contents were swapped (seqs kept)', async () => {
    const result = await outcome.swapped
    expect(result.stdout).toContain('chain 0: audit chain BROKEN at seq 2: prev_hash_mismatch')
    expect(result.code).toBe(1)
  })

  it('verifies from the checkpoint after a pruned prefix', async () => {
    const result = await outcome.pruned
    expect(result.stdout.trim(), result.stderr).toBe('chain 0: audit chain OK: 3 rows (seq 3..5)')
    expect(result.code).toBe(0)
  })

  it('verifies every chain and reports each: exit 1 when one of two chains is broken', async () => {
    const result = await outcome.chains
    const lines = result.stdout.trim().split('\n')
    expect(lines[0], result.stderr).toBe('chain 0: audit chain OK: 5 rows (seq 1..5)')
    expect(lines[1]).toMatch(/^chain 3: audit chain BROKEN at seq 4: hash_mismatch/)
    expect(lines).toHaveLength(2)
    expect(result.code).toBe(1)
  })
})
