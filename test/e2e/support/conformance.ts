// Reading the MCP conformance suite's results (both suite versions the e2e
// tests run): each scenario writes <out>/server-<scenario>-<timestamp>/checks.json.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { z } from 'zod'

const Check = z.looseObject({
  id: z.string(),
  status: z.string(),
  errorMessage: z.string().optional(),
  details: z.unknown().optional(),
})
type Check = z.infer<typeof Check>

export interface Outcome {
  passed: boolean
  /** checks per status (SUCCESS, FAILURE, WARNING, SKIPPED, ...) */
  counts: Record<string, number>
  /** "check-id: message {details}" for every failed check */
  failures: string[]
}

/** The committed baseline of expected failures: every entry with its reason. */
export const Baseline = z.object({ about: z.string(), server: z.record(z.string(), z.string().min(10)) })

/** Result folders are named server-<scenario>-<ISO timestamp with ':' and '.' as '-'>. */
function scenarioOf(folder: string): string | undefined {
  return /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/.exec(folder)?.[1]
}

function describeFailure(check: Check): string {
  const details = check.details === undefined ? '' : ` ${JSON.stringify(check.details).slice(0, 600)}`
  return `${check.id}: ${check.errorMessage ?? 'failed'}${details}`
}

/** Every scenario's outcome found under `outputDir`. */
export function readOutcomes(outputDir: string): Map<string, Outcome> {
  const outcomes = new Map<string, Outcome>()
  for (const folder of readdirSync(outputDir)) {
    const scenario = scenarioOf(folder)
    if (scenario === undefined) continue
    const checks = z.array(Check).parse(JSON.parse(readFileSync(join(outputDir, folder, 'checks.json'), 'utf8')))
    const counts: Record<string, number> = {}
    for (const c of checks) counts[c.status] = (counts[c.status] ?? 0) + 1
    const failures = checks.filter((c) => c.status === 'FAILURE').map(describeFailure)
    outcomes.set(scenario, { passed: failures.length === 0, counts, failures })
  }
  return outcomes
}
