// npm run check:tools — checks tools.config.ts completely: what the Worker
// checks when it loads (names, types, scopes, limits, parameters used and
// declared) and what needs the SQL guard (a read the guard accepts, a write
// that is one INSERT/UPDATE/DELETE, access matching the statement). Every
// mistake is printed as `tools.config.ts:<line>: tool <name>: <field>: ...`;
// exits 1 if there is one. Part of `npm run typecheck`, `npm run dev` and
// `npm run deploy`.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './lib/dev-env.ts'
import DECLARED_TOOLS from '../tools.config.ts'
import { checkDeclaredSql, formatProblem, type Problem } from '../src/tools/declared.ts'

const FILE = join(ROOT, 'tools.config.ts')

/** The line of tools.config.ts a problem is on: its tool's key, then each field of its path below it. */
export function problemLine(source: string, problem: Problem): number | undefined {
  const lines = source.split('\n')
  const key = (name: string) => new RegExp(`^\\s*(['"]?)${name.replace(/[^\w]/g, '\\$&')}\\1\\s*:`)
  let at = lines.findIndex((l) => key(problem.tool).test(l))
  if (at === -1) return undefined
  const indent = lines[at]!.search(/\S/)
  const end = lines.findIndex((l, i) => i > at && l.trim() !== '' && l.search(/\S/) <= indent)
  for (const field of problem.field) {
    const found = lines.findIndex((l, i) => i >= at && (end === -1 || i < end) && new RegExp(`(^|[\\s{,])(['"]?)${field.replace(/[^\w]/g, '\\$&')}\\2\\s*:`).test(l))
    if (found === -1) break
    at = found
  }
  return at + 1
}

export async function checkTools(): Promise<string[]> {
  const source = readFileSync(FILE, 'utf8')
  let problems: readonly Problem[]
  try {
    // loading the policy runs the Worker's own checks of the file
    await import('../src/policy/policy.ts')
    problems = await checkDeclaredSql(DECLARED_TOOLS)
  } catch (error) {
    if (!(error instanceof Error && 'problems' in error)) throw error
    problems = (error as Error & { problems: readonly Problem[] }).problems
  }
  return problems.map((p) => formatProblem(p, problemLine(source, p)))
}

if (import.meta.url === `file://${process.argv[1]}`) {
  checkTools().then(
    (messages) => {
      for (const m of messages) console.error(m)
      if (messages.length > 0) process.exit(1)
      console.log(`tools.config.ts: ${Object.keys(DECLARED_TOOLS).length} declared tools checked`)
    },
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : error)
      process.exit(1)
    },
  )
}
