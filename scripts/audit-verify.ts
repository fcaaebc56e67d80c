// audit:verify — walks every audit chain in D1 (AUDIT_CHAINS; one by
// default) and names the first broken row of each.
//
//   npx tsx scripts/audit-verify.ts [--remote] [--database DB] [--persist-to DIR] [--page-size N]
//
// Lists the chains (audit_log.chain values and checkpoints), then for each
// reads its `audit_checkpoint` row and its `audit_log` rows in pages of N rows
// (default 1000, keyset paging on seq) through `wrangler d1 execute <DB>
// --local|--remote --json --command …`, and verifies them with verifyChain
// (src/audit/chain.ts) from the checkpoint, or from the genesis when nothing
// was ever pruned. One line per chain:
//   "chain 0: audit chain OK: N rows (seq a..b)"
//   "chain 3: audit chain BROKEN at seq N: <reason> (<detail>)"
//   (no chain at all: "audit chain OK: 0 rows")
//   exit 0  every chain verifies
//   exit 1  at least one chain is broken (or a chain column was tampered into a non-integer)
//   exit 2  usage error, or wrangler/D1 could not be read (message on stderr)
// Guarantees: it only runs SELECTs; every value spliced into SQL is an
// integer it validated. Limits: it cannot see the newest rows being deleted
// (see chain.ts), and a prune running during the walk can show as a gap.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { AUDIT_COLUMNS, verifyFromRows } from '../src/audit/chain.ts'

export interface VerifyArgs {
  remote: boolean
  database: string
  persistTo: string | undefined
  pageSize: number
}

const USAGE = 'usage: tsx scripts/audit-verify.ts [--remote] [--database DB] [--persist-to DIR] [--page-size N]'

export function parseArgs(argv: readonly string[]): VerifyArgs {
  const args: VerifyArgs = { remote: false, database: 'DB', persistTo: undefined, pageSize: 1000 }
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] ?? ''
    const eq = arg.indexOf('=')
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg
    const value = (): string => {
      const v = eq > 0 && arg.startsWith('--') ? arg.slice(eq + 1) : argv[++i]
      if (v === undefined || v === '') throw new Error(`${name} needs a value\n${USAGE}`)
      return v
    }
    if (name === '--remote') args.remote = true
    else if (name === '--local') args.remote = false
    else if (name === '--database') args.database = value()
    else if (name === '--persist-to') args.persistTo = resolve(value()) // wrangler runs from the repo root
    else if (name === '--page-size') {
      const n = Number(value())
      if (!Number.isSafeInteger(n) || n < 1 || n > 10_000) throw new Error(`--page-size must be an integer in 1..10000\n${USAGE}`)
      args.pageSize = n
    } else if (name === '--help' || name === '-h') throw new Error(USAGE)
    else throw new Error(`unknown argument ${arg}\n${USAGE}`)
  }
  if (args.remote && args.persistTo !== undefined) throw new Error('--persist-to only applies to the local database')
  return args
}

type RawRow = Record<string, unknown>

// The verification itself is pure and lives in src/audit/chain.ts (unit-tested there).
export { verifyFromRows }

const root = fileURLToPath(new URL('..', import.meta.url))

/** Runs one read-only statement through wrangler and returns its rows. */
async function d1Query(args: VerifyArgs, sql: string): Promise<RawRow[]> {
  const local = `${root}node_modules/.bin/wrangler`
  const [command, prefix] = existsSync(local) ? [local, []] : ['npx', ['wrangler']]
  const argv = [...prefix, 'd1', 'execute', args.database, args.remote ? '--remote' : '--local', '--json', '--command', sql]
  if (args.persistTo !== undefined) argv.push('--persist-to', args.persistTo)
  const { code, stdout, stderr } = await run(command, argv)
  let parsed: unknown
  try {
    parsed = JSON.parse(stdout)
  } catch {
    throw new Error(`wrangler d1 execute failed (exit ${code}): ${(stderr || stdout).trim().slice(0, 2000)}`)
  }
  if (code !== 0 || !Array.isArray(parsed)) {
    const text = (parsed as { error?: { text?: unknown } } | null)?.error?.text
    throw new Error(`wrangler d1 execute failed (exit ${code}): ${typeof text === 'string' ? text : (stderr || stdout).trim().slice(0, 2000)}`)
  }
  const first = parsed[0] as { results?: unknown; success?: unknown } | undefined
  if (!first || first.success !== true || !Array.isArray(first.results)) {
    throw new Error(`wrangler d1 execute returned an unexpected document: ${stdout.slice(0, 500)}`)
  }
  return first.results as RawRow[]
}

function run(command: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, {
      cwd: root,
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }))
  })
}

const COLUMNS = AUDIT_COLUMNS.join(', ')

/** Every row of one chain, ascending seq, one wrangler call per page. */
export async function* wranglerRows(args: VerifyArgs, chain: number): AsyncIterable<RawRow> {
  let cursor = Number.MIN_SAFE_INTEGER
  for (;;) {
    const page = await d1Query(args, `SELECT ${COLUMNS} FROM audit_log WHERE chain = ${chain} AND seq > ${cursor} ORDER BY seq LIMIT ${args.pageSize}`)
    yield* page
    if (page.length < args.pageSize) return
    const last = page[page.length - 1]?.seq
    // A seq that is not an integer (tampering) sorts last; the verifier reports it.
    if (typeof last !== 'number' || !Number.isSafeInteger(last)) return
    cursor = last
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  let args: VerifyArgs
  try {
    args = parseArgs(argv)
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error))
    return 2
  }
  try {
    // Every chain with its checkpoint (if any), in one query.
    const listed = await d1Query(args, `SELECT c.chain AS chain, k.chain AS checkpoint_chain, k.last_seq AS last_seq, k.last_hash AS last_hash
      FROM (SELECT chain FROM audit_log GROUP BY chain UNION SELECT chain FROM audit_checkpoint) AS c
      LEFT JOIN audit_checkpoint AS k ON k.chain = c.chain ORDER BY c.chain`)
    if (listed.length === 0) {
      console.log('audit chain OK: 0 rows')
      return 0
    }
    let ok = true
    for (const { chain, checkpoint_chain: checkpointChain, last_seq: lastSeq, last_hash: lastHash } of listed) {
      if (typeof chain !== 'number' || !Number.isSafeInteger(chain)) {
        console.log(`chain ${JSON.stringify(chain)}: audit chain BROKEN: rows carry a chain value that is not an integer (tampered)`)
        ok = false
        continue
      }
      const checkpoint = checkpointChain === null || checkpointChain === undefined ? null : { last_seq: lastSeq, last_hash: lastHash }
      const report = await verifyFromRows(wranglerRows(args, chain), checkpoint)
      console.log(`chain ${chain}: ${report.message}`)
      ok &&= report.ok
    }
    return ok ? 0 : 1
  } catch (error) {
    console.error(`audit:verify could not read the audit log: ${error instanceof Error ? error.message : String(error)}`)
    return 2
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2))
}
