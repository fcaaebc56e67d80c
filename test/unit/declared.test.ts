// The tools file (tools.config.ts, src/tools/declared.ts): each kind of
// mistake is refused — when the Worker loads (withDeclaredTools, which
// POLICY_INPUT is built with) or by `npm run check:tools` (the SQL guard's
// checks) — with a message naming the tool, the field and the line.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import DECLARED_TOOLS from '../../tools.config.ts'
import { problemLine } from '../../scripts/check-tools.ts'
import { DeclarationError, withDeclaredTools } from '../../src/policy/policy.ts'
import { checkDeclaredSql, declaredTool, formatProblem, namedParameters, type DeclaredTool, type ToolsFile } from '../../src/tools/declared.ts'

const READ: DeclaredTool = {
  title: 'Open tickets',
  description: 'The open tickets of one customer.',
  scope: 'customers:read',
  access: 'read',
  parameters: { customerId: { type: 'string', pattern: '^cus_[A-Za-z0-9]+$', maxLength: 64, description: 'customer id' } },
  sql: "SELECT id, subject FROM tickets WHERE customer_id = :customerId AND status = 'open'",
  result: { rows: 'tickets' },
}

/** The messages loading a tools file with `tool` gives (the Worker's start). */
function atStart(tool: DeclaredTool, name = 'open_tickets'): string[] {
  try {
    withDeclaredTools({ [name]: tool })
    return []
  } catch (error) {
    if (!(error instanceof DeclarationError)) throw error
    return error.problems.map((p) => formatProblem(p))
  }
}

async function atBuild(tool: DeclaredTool): Promise<string[]> {
  return (await checkDeclaredSql({ open_tickets: tool })).map((p) => formatProblem(p))
}

describe('a tools file with a mistake is refused, naming it', () => {
  it('accepts the correct declaration at start and at build', async () => {
    expect(atStart(READ)).toEqual([])
    expect(await atBuild(READ)).toEqual([])
  })

  it('an unknown scope', () => {
    expect(atStart({ ...READ, scope: 'tickets:read' })).toEqual([expect.stringMatching(/^tools\.config\.ts: tool open_tickets: scope: "tickets:read" is not a scope of the policy/)])
  })

  it('a declared parameter the statement does not use', () => {
    expect(atStart({ ...READ, parameters: { ...READ.parameters, status: { type: 'string', description: 'status' } } })).toEqual([
      'tools.config.ts: tool open_tickets: parameters.status: is declared but the statement does not use :status',
    ])
  })

  it('a parameter the statement uses but nobody declared', () => {
    expect(atStart({ ...READ, sql: `${READ.sql} AND priority = :priority` })).toEqual(['tools.config.ts: tool open_tickets: sql: uses :priority, which is not a declared parameter'])
  })

  it('a statement the SQL guard refuses', async () => {
    expect(await atBuild({ ...READ, sql: 'SELECT * FROM audit_log WHERE sub = :customerId' })).toEqual([
      expect.stringMatching(/^tools\.config\.ts: tool open_tickets: sql: the SQL guard refuses it: table audit_log is not queryable/),
    ])
    expect(await atBuild({ ...READ, sql: 'SELECT load_extension(:customerId)' })).toEqual([expect.stringMatching(/function load_extension is not allowed/)])
  })

  it('a write declared read-only', async () => {
    expect(await atBuild({ ...READ, sql: "UPDATE tickets SET status = 'closed' WHERE customer_id = :customerId" })).toEqual([
      expect.stringMatching(/^tools\.config\.ts: tool open_tickets: sql: is declared access: 'read' but the SQL guard refuses it as a write/),
    ])
  })

  it('a read declared as a write', async () => {
    const { result: _, ...rest } = READ as Extract<DeclaredTool, { access: 'read' }>
    expect(await atBuild({ ...rest, access: 'write' })).toEqual([expect.stringMatching(/sql: the SQL guard refuses it as a write: a declared write is one INSERT, UPDATE or DELETE \(got SELECT\)/)])
  })

  it.each([
    ['a name clash with a hand-written tool', { ...READ }, 'list_orders', /tool list_orders: a hand-written tool already has this name/],
    ['a bad tool name', { ...READ }, 'Open-Tickets', /a tool name is lower case/],
    ['a missing description', { ...READ, description: '' }, 'open_tickets', /description: is required/],
    ['an invalid pattern', { ...READ, parameters: { customerId: { type: 'string', pattern: '(', description: 'x' } } }, 'open_tickets', /parameters\.customerId\.pattern: \/\(\/ is not a valid regular expression/],
    ['a default its own checks refuse', { ...READ, parameters: { customerId: { type: 'string', pattern: '^cus_', default: 'ord_1', description: 'x' } } }, 'open_tickets', /parameters\.customerId\.default: does not pass/],
    ['a bound parameter that is not claim.<name>', { ...READ, parameters: { customerId: { from: 'token.sub' as `claim.${string}` } } }, 'open_tickets', /parameters\.customerId\.from: must be claim\.<name>/],
    ['an unknown parameter type', { ...READ, parameters: { customerId: { type: 'date', description: 'x' } as never } }, 'open_tickets', /parameters\.customerId\.type: must be/],
    ['a result without a key', { ...READ, result: {} as never }, 'open_tickets', /result: must be/],
    ['a timeout that is not a positive integer', { ...READ, timeoutMs: 0 }, 'open_tickets', /timeoutMs: must be a positive integer/],
  ])('%s', (_, tool, name, message) => {
    expect(atStart(tool as DeclaredTool, name)).toEqual(expect.arrayContaining([expect.stringMatching(message)]))
  })

  it('names the line of the mistake in the file', () => {
    const source = [
      "import { declareTools } from './src/tools/declared.ts'",
      'export default declareTools({',
      '  first: {',
      "    title: 'x',",
      '    parameters: {',
      "      id: { type: 'string', description: 'x' },",
      '    },',
      '  },',
      '  open_tickets: {',
      "    title: 'Open tickets',",
      '    parameters: {',
      "      status: { type: 'string', description: 'status' },",
      '    },',
      "    sql: 'SELECT 1',",
      '  },',
      '})',
    ].join('\n')
    expect(problemLine(source, { tool: 'open_tickets', field: ['parameters', 'status'], message: '' })).toBe(12)
    expect(problemLine(source, { tool: 'open_tickets', field: ['sql'], message: '' })).toBe(14)
    expect(problemLine(source, { tool: 'open_tickets', field: [], message: '' })).toBe(9)
    expect(problemLine(source, { tool: 'first', field: ['sql'], message: '' })).toBe(3)
  })
})

describe('the shipped tools file', () => {
  it('passes every check, at start and at build', async () => {
    expect(() => withDeclaredTools(DECLARED_TOOLS)).not.toThrow()
    expect(await checkDeclaredSql(DECLARED_TOOLS)).toEqual([])
  })
})

describe('declared tool contract', () => {
  const file: ToolsFile = {
    my_tickets: {
      title: 'My tickets',
      description: 'Tickets I opened.',
      scope: 'customers:read',
      access: 'read',
      parameters: {
        me: { from: 'claim.sub' },
        status: { type: 'string', enum: ['open', 'closed'], optional: true, description: 'only this status' },
      },
      sql: 'SELECT id FROM tickets WHERE created_by = :me AND (:status IS NULL OR status = :status)',
      result: { rows: 'tickets' },
    },
  }

  it('keeps a parameter bound to a claim out of the input the model sees, and refuses it as an argument', () => {
    const tool = declaredTool('my_tickets', file['my_tickets']!)
    expect(Object.keys(tool.input.shape)).toEqual(['status'])
    expect(tool.input.safeParse({ me: 'someone-else' }).success).toBe(false)
    expect(tool.input.safeParse({ status: 'open' }).success).toBe(true)
  })

  it('finds :name parameters outside strings, quoted names and comments', () => {
    expect(namedParameters("SELECT 'it''s :no', \"a:no\", [b:no], `c:no` -- :no\n, :yes /* :no */ FROM t WHERE x = :yes AND y = :other")).toEqual(['yes', 'other'])
  })
})

describe('README "Add your own tool in five minutes"', () => {
  const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')
  it('shows exactly the migration and the declaration the integration test runs', () => {
    const readme = read('README.md')
    const tools = read('test/fixtures/shipments/tools.ts')
    expect(readme).toContain(read('test/fixtures/shipments/0002_shipments.sql'))
    expect(readme).toContain(tools.slice(tools.indexOf('  list_shipments: {'), tools.lastIndexOf('})')))
  })
})
