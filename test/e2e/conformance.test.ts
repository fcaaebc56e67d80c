// The official MCP conformance suite (@modelcontextprotocol/conformance
// 0.1.13; 0.1.14+ crash on Node 20) against the real server:
//
//   conformance list --server
//   conformance server --url http://127.0.0.1:<proxy>/mcp --suite all -o <tmp>
//
// The suite cannot send an Authorization header, so it talks to a loopback
// proxy that adds an admin token (support/token-proxy.ts). Each scenario's
// checks.json is read back and compared with the committed baseline,
// conformance-expected-failures.json, which gives every expected failure its
// reason. The test fails on an unexpected failure AND on a listed scenario
// that passes, so the baseline stays honest.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/lib/dev-env.ts'
import { Baseline, readOutcomes, type Outcome } from './support/conformance.ts'
import { run } from './support/run.ts'
import { startDevServer, type DevServer } from './support/server.ts'
import { startTokenProxy, type TokenProxy } from './support/token-proxy.ts'

const BIN = join(ROOT, 'node_modules', '.bin', 'conformance')
const MUST_PASS = ['server-initialize', 'ping', 'tools-list', 'dns-rebinding-protection']

const baseline = Baseline.parse(JSON.parse(readFileSync(new URL('./conformance-expected-failures.json', import.meta.url), 'utf8')))
const expectedFailures = new Map(Object.entries(baseline.server))

let server: DevServer | undefined
let proxy: TokenProxy | undefined
let outputDir: string | undefined
let scenarios: string[] = []
let outcomes = new Map<string, Outcome>()
let transcript = ''

/** `conformance list --server` prints "  - <name>" per scenario. */
function parseScenarioList(stdout: string): string[] {
  return [...stdout.matchAll(/^\s+-\s+(\S+)\s*$/gm)].map((m) => m[1]!)
}

beforeAll(async () => {
  server = await startDevServer()
  proxy = await startTokenProxy({ target: server.url, token: await server.token({ role: 'admin', sub: 'conformance' }) })
  outputDir = mkdtempSync(join(tmpdir(), 'bastion-conformance-'))

  const list = await run(BIN, ['list', '--server'], { cwd: ROOT, timeoutMs: 30_000 })
  scenarios = parseScenarioList(list.stdout)
  if (list.code !== 0 || scenarios.length === 0) throw new Error(`conformance list --server failed (${list.code})\n${list.stdout}\n${list.stderr}`)

  // Exit code 1 just means "some scenario failed"; the checks are judged below.
  const suite = await run(BIN, ['server', '--url', `${proxy.url}/mcp`, '--suite', 'all', '-o', outputDir], { cwd: ROOT, timeoutMs: 120_000 })
  transcript = `${suite.stdout}\n${suite.stderr}`
  outcomes = readOutcomes(outputDir)
})

afterAll(async () => {
  await proxy?.close()
  await server?.stop()
  if (outputDir !== undefined) rmSync(outputDir, { recursive: true, force: true })
})

describe('MCP conformance suite 0.1.13, server scenarios, through the token proxy', () => {
  it('produced a result for every server scenario the suite lists', () => {
    const missing = scenarios.filter((s) => !outcomes.has(s))
    expect(missing, `no checks.json for these scenarios; suite output:\n${transcript}`).toEqual([])
  })

  it.each(MUST_PASS)('%s passes', (scenario) => {
    const outcome = outcomes.get(scenario)
    expect(outcome, `scenario ${scenario} did not run`).toBeDefined()
    // The suite addresses the proxy; the proxy forwards a Host/Origin naming itself as the server's own.
    expect(outcome!.failures, `via ${proxy?.url} → ${server?.url}`).toEqual([])
  })

  it('every failing scenario is an expected failure (listed with its reason)', () => {
    const unexpected = [...outcomes].filter(([scenario, o]) => !o.passed && !expectedFailures.has(scenario)).map(([scenario, o]) => `${scenario}\n    ${o.failures.join('\n    ')}`)
    expect(unexpected, 'failing scenarios missing from conformance-expected-failures.json').toEqual([])
  })

  it('no expected failure passes (a fixed scenario must leave the baseline)', () => {
    const stale = [...expectedFailures.keys()].filter((scenario) => outcomes.get(scenario)?.passed === true)
    expect(stale, 'these scenarios pass now: remove them from conformance-expected-failures.json').toEqual([])
  })

  it('the baseline names only scenarios the suite knows, and none that must pass', () => {
    const unknown = [...expectedFailures.keys()].filter((scenario) => !scenarios.includes(scenario))
    expect(unknown, 'not a server scenario of this suite version').toEqual([])
    for (const scenario of MUST_PASS) expect(expectedFailures.has(scenario), `${scenario} may not be an expected failure`).toBe(false)
  })
})
