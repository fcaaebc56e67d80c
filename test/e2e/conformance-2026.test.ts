// npm run test:conformance-2026 (not part of npm test: it downloads Node 22
// and the suite, ~240 MB, on first use).
// The official MCP conformance suite at its newest release that speaks the
// 2026-07-28 revision (@modelcontextprotocol/conformance 0.2.0-alpha.12),
// against the real server in conformance fixture mode (`npm run dev --
// --conformance`: the suite's diagnostic tools, src/conformance/):
//
//   conformance server --url http://127.0.0.1:<proxy>/mcp --requirements 2026-07-28 -o <tmp>
//
// That release needs Node 22; the machine runs Node 20, so the suite and a
// Node 22 binary (the npm registry's `node` package) are installed, pinned,
// into .tmp/conformance-2026 on first use. The suite cannot send an
// Authorization header: it talks to the loopback token proxy. The three sets
// the README records must pass in full; every other failing scenario must be
// listed, with its reason, in conformance-2026-expected-failures.json, and a
// listed scenario that passes fails the test (the baseline stays honest).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/lib/dev-env.ts'
import { Baseline, readOutcomes, type Outcome } from './support/conformance.ts'
import { run } from './support/run.ts'
import { startDevServer, type DevServer } from './support/server.ts'
import { startTokenProxy, type TokenProxy } from './support/token-proxy.ts'

const SUITE_VERSION = '0.2.0-alpha.12'
const NODE_VERSION = '22.23.3'
const DIR = join(ROOT, '.tmp', 'conformance-2026')
const NODE = join(DIR, 'node_modules', 'node', 'bin', 'node')
const CLI = join(DIR, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js')
/** The sets README "Conformance" records, with their checks: every one must succeed. */
const MUST_PASS: [string, number][] = [
  ['server-stateless', 25],
  ['caching', 8],
  ['tools-list', 4],
]

const baseline = Baseline.parse(JSON.parse(readFileSync(new URL('./conformance-2026-expected-failures.json', import.meta.url), 'utf8')))
const expectedFailures = new Map(Object.entries(baseline.server))

let server: DevServer | undefined
let proxy: TokenProxy | undefined
let outputDir: string | undefined
let outcomes = new Map<string, Outcome>()
let transcript = ''

function installedVersion(pkg: string): string | undefined {
  const file = join(DIR, 'node_modules', ...pkg.split('/'), 'package.json')
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version : undefined
}

beforeAll(async () => {
  if (installedVersion('@modelcontextprotocol/conformance') !== SUITE_VERSION || installedVersion('node') !== NODE_VERSION || !existsSync(NODE)) {
    mkdirSync(DIR, { recursive: true })
    const install = await run('npm', ['install', '--prefix', DIR, '--no-save', '--no-audit', '--no-fund', `node@${NODE_VERSION}`, `@modelcontextprotocol/conformance@${SUITE_VERSION}`], { cwd: ROOT, timeoutMs: 170_000 })
    if (install.code !== 0 || !existsSync(NODE)) throw new Error(`installing the 2026-07-28 suite failed (${install.code})\n${install.stdout}\n${install.stderr}`)
  }
  server = await startDevServer({ conformance: true })
  proxy = await startTokenProxy({ target: server.url, token: await server.token({ role: 'admin', sub: 'conformance-2026' }) })
  outputDir = mkdtempSync(join(tmpdir(), 'bastion-conformance-2026-'))
  // Exit code 1 just means "some scenario failed"; the checks are judged below.
  const suite = await run(NODE, [CLI, 'server', '--url', `${proxy.url}/mcp`, '--requirements', '2026-07-28', '-o', outputDir], { cwd: ROOT, timeoutMs: 170_000 })
  transcript = `${suite.stdout}\n${suite.stderr}`
  outcomes = readOutcomes(outputDir)
}, 420_000)

afterAll(async () => {
  await proxy?.close()
  await server?.stop()
  if (outputDir !== undefined) rmSync(outputDir, { recursive: true, force: true })
})

describe(`MCP conformance suite ${SUITE_VERSION}, the 2026-07-28 requirements, fixture mode`, () => {
  it.each(MUST_PASS)('%s: all %d checks succeed', (scenario, checks) => {
    const outcome = outcomes.get(scenario)
    expect(outcome, `scenario ${scenario} did not run; suite output:\n${transcript.slice(-3000)}`).toBeDefined()
    expect(outcome!.failures).toEqual([])
    expect(outcome!.counts['SUCCESS']).toBe(checks)
  })

  it('every failing scenario is an expected failure (listed with its reason)', () => {
    expect(outcomes.size, transcript.slice(-3000)).toBeGreaterThan(30)
    const unexpected = [...outcomes].filter(([scenario, o]) => !o.passed && !expectedFailures.has(scenario)).map(([scenario, o]) => `${scenario}\n    ${o.failures.join('\n    ')}`)
    expect(unexpected, 'failing scenarios missing from conformance-2026-expected-failures.json').toEqual([])
  })

  it('no expected failure passes, and the baseline names only scenarios that ran', () => {
    expect([...expectedFailures.keys()].filter((s) => !outcomes.has(s)), 'not a scenario of this run').toEqual([])
    expect([...expectedFailures.keys()].filter((s) => outcomes.get(s)?.passed === true), 'these pass now: remove them from the baseline').toEqual([])
    for (const [scenario] of MUST_PASS) expect(expectedFailures.has(scenario), `${scenario} may not be an expected failure`).toBe(false)
  })
})
