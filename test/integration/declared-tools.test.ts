// Declared tools against the real D1, the SQL guard and the real audit path
// (src/tools/declared.ts through the tool boundary, src/mcp/invoke.ts):
//   - README's "five minutes": a new table from one migration
//     (test/fixtures/shipments/0002_shipments.sql) and one declaration
//     (test/fixtures/shipments/tools.ts), and no TypeScript, is a working tool;
//   - a parameter bound to a claim takes the token's value, whatever the model
//     sends, and a token without the claim is refused;
//   - row scope applies to declared reads and writes;
//   - a declared write commits with its audit row in one batch
//     (AuditedCall + AuditSequencer), and `requireChange` refuses a no-op.
// The shipped declarations (get_customer, search_products) are exercised
// through the whole Worker in tools.test.ts and row-scope.test.ts.
import { env } from 'cloudflare:workers'
import { beforeAll, describe, expect, it } from 'vitest'
import { AuditedCall } from '../../src/audit/audited-call.ts'
import { sequencer } from '../../src/audit/writer.ts'
import type { Principal } from '../../src/auth/principal.ts'
import { parseConfig } from '../../src/config.ts'
import { invokeTool } from '../../src/mcp/invoke.ts'
import type { RequestScope } from '../../src/mcp/scope.ts'
import { validatePolicy, withDeclaredTools } from '../../src/policy/policy.ts'
import { parseRowScope, rowFilterFor, type RowFilter } from '../../src/policy/row-scope.ts'
import { checkDeclaredSql, declaredTool, type ToolsFile } from '../../src/tools/declared.ts'
import DECLARED_TOOLS from '../../tools.config.ts'
import SHIPMENTS from '../fixtures/shipments/tools.ts'
import { testEnv } from '../support/test-env.ts'

const E = testEnv(env)
const parsed = parseConfig(E as unknown as Record<string, unknown>)
if (!parsed.ok) throw new Error(`test config: ${parsed.setting}: ${parsed.problem}`)
const config = parsed.config

const TICKETS: ToolsFile = {
  my_tickets: {
    title: 'My tickets',
    description: 'The tickets I opened, newest first.',
    scope: 'tickets:write',
    access: 'read',
    parameters: {
      me: { from: 'claim.sub' },
      status: { type: 'string', enum: ['open', 'closed'], optional: true, description: 'only tickets in this status' },
    },
    sql: 'SELECT id, customer_id, subject, status FROM tickets WHERE created_by = :me AND (:status IS NULL OR status = :status) ORDER BY created_at DESC, id',
    result: { rows: 'tickets' },
  },
  team_tickets: {
    title: 'Team tickets',
    description: "The tickets of my team's customers.",
    scope: 'tickets:write',
    access: 'read',
    parameters: { team: { from: 'claim.team' } },
    sql: 'SELECT id FROM tickets WHERE created_by = :team',
    result: { rows: 'tickets' },
  },
  close_ticket: {
    title: 'Close ticket',
    description: 'Close one open ticket.',
    scope: 'tickets:write',
    access: 'write',
    parameters: { ticketId: { type: 'string', pattern: '^tkt_[A-Za-z0-9_]+$', maxLength: 64, description: 'ticket id' } },
    sql: "UPDATE tickets SET status = 'closed' WHERE id = :ticketId AND status = 'open'",
    requireChange: 'ticket :ticketId is not open (or does not exist)',
  },
}
const FILE: ToolsFile = { ...SHIPMENTS, ...TICKETS }
const POLICY = validatePolicy(withDeclaredTools({ ...DECLARED_TOOLS, ...FILE }))

function principal(sub: string, claims: Record<string, string> = {}): Principal {
  return { sub, scopes: new Set(['orders:read', 'tickets:write']), roles: [], tokenId: `jti-${sub}`, clientId: undefined, claims: new Map(Object.entries(claims)) }
}

/** One tools/call of a declared tool through the tool boundary, with its own audited call. */
async function call(name: string, args: Record<string, unknown>, who: Principal, rows: RowFilter = new Map()) {
  const requestId = `decl-${crypto.randomUUID()}`
  const background: Promise<unknown>[] = []
  const audited = new AuditedCall({
    facts: { requestId, startedAt: Date.now(), principal: who, method: 'tools/call', toolName: name, toolArguments: args, client: undefined },
    chain: 0,
    env: E,
    log: () => {},
    config,
    waitUntil: (p) => void background.push(p),
  })
  const scope: RequestScope = { requestId, principal: who, db: E.DB, rows, log: () => {}, call: audited, pending: undefined, confirm: undefined }
  const tool = declaredTool(name, FILE[name]!)
  const result = await invokeTool(tool, POLICY.tools.get(name)!, tool.input.parse(args), scope, undefined)
  await Promise.all(background)
  expect(await sequencer(E, 0).drain()).toBe(0)
  const audit = await E.DB.prepare('SELECT outcome, error_code FROM audit_log WHERE request_id = ?1').bind(requestId).all<{ outcome: string; error_code: string | null }>()
  return { result, audit: audit.results }
}

/** The input schema's verdict on the model's arguments (the SDK applies it before the tool boundary). */
function invalid(name: string, args: Record<string, unknown>): string | undefined {
  const input = declaredTool(name, FILE[name]!).input.safeParse(args)
  return input.success ? undefined : input.error.issues[0]!.message
}

beforeAll(async () => {
  for (const statement of E.TEST_SHIPMENTS_MIGRATION) await E.DB.prepare(statement).run()
  await E.DB.batch([
    E.DB.prepare("INSERT INTO shipments VALUES ('shp_1', 'ord_0001', 'DHL', 'JD0001', 'delivered', '2026-01-02T10:00:00Z')"),
    E.DB.prepare("INSERT INTO shipments VALUES ('shp_2', 'ord_0001', 'UPS', '1Z0002', 'in_transit', '2026-01-03T10:00:00Z')"),
    E.DB.prepare("INSERT INTO shipments VALUES ('shp_3', 'ord_0002', 'DHL', 'JD0003', 'in_transit', '2026-01-03T11:00:00Z')"),
    ...[['tkt_d_1', 'cus_001', 'alice'], ['tkt_d_2', 'cus_002', 'alice'], ['tkt_d_3', 'cus_001', 'bob']].map(([id, customer, by]) =>
      E.DB.prepare("INSERT INTO tickets (id, customer_id, subject, body, priority, status, created_by, created_at) VALUES (?1, ?2, 'subject', 'body', 'normal', 'open', ?3, '2026-01-01T00:00:00Z')").bind(id!, customer!, by!),
    ),
  ])
})

describe('a new tool over a new table: one migration, one declaration, no TypeScript', () => {
  it('passes the build check', async () => {
    expect(await checkDeclaredSql(SHIPMENTS)).toEqual([])
  })

  it('answers with the rows of the new table, and validates its input', async () => {
    const { result, audit } = await call('list_shipments', { orderId: 'ord_0001' }, principal('alice'))
    expect(result.structuredContent).toEqual({
      shipments: [
        { id: 'shp_1', carrier: 'DHL', tracking: 'JD0001', status: 'delivered', shipped_at: '2026-01-02T10:00:00Z' },
        { id: 'shp_2', carrier: 'UPS', tracking: '1Z0002', status: 'in_transit', shipped_at: '2026-01-03T10:00:00Z' },
      ],
    })
    expect(audit).toEqual([{ outcome: 'ok', error_code: null }])
    expect(invalid('list_shipments', { orderId: "ord_1' OR 1=1 --" })).toMatch(/must match/)
  })
})

describe('parameters bound to a claim', () => {
  it("take the token's value: each caller sees only its own tickets", async () => {
    const alice = await call('my_tickets', {}, principal('alice'))
    expect((alice.result.structuredContent as { tickets: { id: string }[] }).tickets.map((t) => t.id).sort()).toEqual(['tkt_d_1', 'tkt_d_2'])
    const bob = await call('my_tickets', { status: 'open' }, principal('bob'))
    expect((bob.result.structuredContent as { tickets: { id: string }[] }).tickets.map((t) => t.id)).toEqual(['tkt_d_3'])
  })

  it('cannot be overridden by the model: the argument is not in the schema and is refused', async () => {
    expect(Object.keys(declaredTool('my_tickets', TICKETS['my_tickets']!).input.shape)).toEqual(['status'])
    expect(invalid('my_tickets', { me: 'bob' })).toMatch(/unrecognized key/i)
  })

  it('refuse a token without the claim, clearly, and read nothing', async () => {
    const { result, audit } = await call('team_tickets', {}, principal('alice'))
    expect(result).toMatchObject({ isError: true, content: [{ text: expect.stringMatching(/needs the team claim of your token \(team_tickets binds :team to it\)/) }] })
    expect(audit).toEqual([{ outcome: 'tool_error', error_code: 'claim_missing' }])
    const ok = await call('team_tickets', {}, principal('alice', { team: 'bob' }))
    expect(ok.result.structuredContent).toEqual({ tickets: [{ id: 'tkt_d_3' }] })
  })
})

describe('row scope on declared tools', () => {
  const scope = parseRowScope('tickets.customer_id=claim.customer', undefined, new Set(['admin']))
  const asCustomer = (customer: string | undefined) => rowFilterFor(scope, principal('alice', customer === undefined ? {} : { customer }))

  it("filters a declared read to the caller's rows", async () => {
    const { result } = await call('my_tickets', {}, principal('alice', { customer: 'cus_002' }), asCustomer('cus_002'))
    expect((result.structuredContent as { tickets: { id: string }[] }).tickets.map((t) => t.id)).toEqual(['tkt_d_2'])
  })

  it("lets a declared write change only the caller's rows", async () => {
    const refused = await call('close_ticket', { ticketId: 'tkt_d_1' }, principal('alice', { customer: 'cus_002' }), asCustomer('cus_002'))
    expect(refused.result).toMatchObject({ isError: true, content: [{ text: 'ticket tkt_d_1 is not open (or does not exist)' }] })
    expect(await E.DB.prepare("SELECT status FROM tickets WHERE id = 'tkt_d_1'").first('status')).toBe('open')
  })

  it('refuses a caller without the scope claim', async () => {
    const { result } = await call('my_tickets', {}, principal('alice'), asCustomer(undefined))
    expect(result).toMatchObject({ isError: true, content: [{ text: expect.stringMatching(/customer claim/) }] })
  })
})

describe('declared writes', () => {
  it('commit the change with its ok audit row; a second call changes nothing and is refused by requireChange', async () => {
    const first = await call('close_ticket', { ticketId: 'tkt_d_3' }, principal('bob'))
    expect(first.result.structuredContent).toEqual({ applied: true })
    expect(first.audit).toEqual([{ outcome: 'ok', error_code: null }])
    expect(await E.DB.prepare("SELECT status FROM tickets WHERE id = 'tkt_d_3'").first('status')).toBe('closed')
    const again = await call('close_ticket', { ticketId: 'tkt_d_3' }, principal('bob'))
    expect(again.result).toMatchObject({ isError: true, content: [{ text: 'ticket tkt_d_3 is not open (or does not exist)' }] })
    expect(again.audit).toEqual([{ outcome: 'tool_error', error_code: 'no_change' }])
  })

  it('20 concurrent closes of one ticket: exactly one applies, 20 audit rows', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => call('close_ticket', { ticketId: 'tkt_d_2' }, principal('carol'))))
    const applied = results.filter((r) => (r.result.structuredContent as { applied?: boolean } | undefined)?.applied === true)
    expect(applied).toHaveLength(1)
    expect(results.flatMap((r) => r.audit.map((a) => a.outcome)).sort()).toEqual(['ok', ...Array<string>(19).fill('tool_error')])
  })
})
