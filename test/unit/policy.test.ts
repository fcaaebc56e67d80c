// The access policy, checked against INTERFACE.md's table written out here
// literally (not derived from src/policy/policy.ts), so a change to the policy
// that changes who may do what fails this test.
import { describe, expect, it } from 'vitest'
import { decideTool, effectiveScopes, supportedScopes, visibleTools } from '../../src/policy/decide.ts'
import { ALL_SCOPES, POLICY, POLICY_INPUT, PolicyError, startScopes, validatePolicy, type PolicyInput } from '../../src/policy/policy.ts'

const TOOLS = ['get_customer', 'list_orders', 'search_products', 'update_order', 'create_ticket', 'search', 'execute_query'] as const
type Tool = (typeof TOOLS)[number]

/** INTERFACE.md "Policy": tool → scope. */
const SCOPE_OF: Record<Tool, string> = {
  get_customer: 'customers:read',
  list_orders: 'orders:read',
  search_products: 'products:read',
  update_order: 'orders:write',
  create_ticket: 'tickets:write',
  search: 'search:read',
  execute_query: 'sql:read',
}

/** INTERFACE.md "Policy": the ✓ marks, role by role. */
const MATRIX: Record<string, Record<Tool, boolean>> = {
  'read-only': { get_customer: true, list_orders: true, search_products: true, update_order: false, create_ticket: false, search: false, execute_query: false },
  editor: { get_customer: true, list_orders: true, search_products: false, update_order: true, create_ticket: true, search: false, execute_query: false },
  admin: { get_customer: true, list_orders: true, search_products: true, update_order: true, create_ticket: true, search: true, execute_query: true },
}

const SEVEN_SCOPES = ['customers:read', 'orders:read', 'products:read', 'orders:write', 'tickets:write', 'search:read', 'sql:read']

const scopesOf = (scopes: string[], role?: string) => effectiveScopes(POLICY, { scopes, roles: role === undefined ? [] : [role] })
const allowed = (scopes: ReadonlySet<string>) => TOOLS.filter((t) => decideTool(POLICY, scopes, t).allow)

describe('role × tool matrix (INTERFACE.md policy table)', () => {
  const cells = Object.entries(MATRIX).flatMap(([role, row]) => TOOLS.map((tool) => ({ role, tool, allow: row[tool] })))

  it.each(cells)('role $role → $tool: allowed = $allow', ({ role, tool, allow }) => {
    const decision = decideTool(POLICY, scopesOf([], role), tool)
    if (allow) {
      expect(decision).toMatchObject({ allow: true, tool: { scope: SCOPE_OF[tool] } })
    } else {
      expect(decision).toEqual({ allow: false, reason: 'insufficient_scope', scope: SCOPE_OF[tool] })
    }
  })

  // the order is the policy's (hand-written tools, then tools.config.ts), not INTERFACE.md's
  it.each(Object.keys(MATRIX))('role %s sees exactly its tools in tools/list', (role) => {
    const expected = TOOLS.filter((t) => MATRIX[role]![t])
    expect([...visibleTools(POLICY, scopesOf([], role))].sort()).toEqual([...expected].sort())
  })

  it('the policy names exactly the roles and tools of the table', () => {
    expect([...POLICY.roles.keys()].sort()).toEqual(Object.keys(MATRIX).sort())
    expect([...POLICY.tools.keys()].sort()).toEqual([...TOOLS].sort())
  })

  it.each(TOOLS)('tool %s requires the scope of the table', (tool) => {
    expect(POLICY.tools.get(tool)?.scope).toBe(SCOPE_OF[tool])
  })
})

describe('scope-only tokens', () => {
  it.each(Object.entries(SCOPE_OF))('the scope of %s alone grants exactly that tool', (tool, scope) => {
    expect(allowed(scopesOf([scope]))).toEqual([tool])
  })

  it('all seven scopes grant every tool', () => {
    expect(allowed(scopesOf(SEVEN_SCOPES))).toEqual([...TOOLS])
  })

  it('refuses naming the scope the tool needs', () => {
    expect(decideTool(POLICY, scopesOf(['customers:read']), 'update_order')).toEqual({ allow: false, reason: 'insufficient_scope', scope: 'orders:write' })
  })
})

describe('what grants nothing', () => {
  it.each([
    ['a "*" scope', ['*'], undefined],
    ['an empty scope', [], undefined],
    ['an empty-string scope', [''], undefined],
    ['an unknown scope', ['customers:write', 'admin'], undefined],
    ['a scope prefix ("orders")', ['orders'], undefined],
    ['a wildcard-looking scope ("orders:*")', ['orders:*'], undefined],
    ['a scope in the wrong case', ['Customers:Read'], undefined],
    ['an unknown role', [], 'superuser'],
    ['a role in the wrong case ("Admin")', [], 'Admin'],
    ['a role named after an Object prototype key', [], '__proto__'],
    ['a role named "constructor"', [], 'constructor'],
    ['a role whose name is a scope', [], 'customers:read'],
    ['"*" as the role', [], '*'],
  ] as [string, string[], string | undefined][])('%s grants no scope and no tool', (_what, scopes, role) => {
    const effective = scopesOf(scopes, role)
    expect([...effective]).toEqual([])
    expect(allowed(effective)).toEqual([])
    expect(visibleTools(POLICY, effective)).toEqual([])
  })

  it('keeps known scopes and drops unknown ones from the same token', () => {
    expect([...scopesOf(['*', 'orders:read', 'bogus'])]).toEqual(['orders:read'])
  })

  it('refuses a tool that is not in the policy as unknown, whatever the scopes', () => {
    expect(decideTool(POLICY, scopesOf(SEVEN_SCOPES, 'admin'), 'drop_database')).toEqual({ allow: false, reason: 'unknown_tool' })
    expect(decideTool(POLICY, scopesOf(SEVEN_SCOPES, 'admin'), '__proto__')).toEqual({ allow: false, reason: 'unknown_tool' })
  })
})

describe('effective scopes are the union of role and scope', () => {
  it('read-only role plus orders:write scope can update orders, and nothing more', () => {
    expect(allowed(scopesOf(['orders:write'], 'read-only'))).toEqual(['get_customer', 'list_orders', 'search_products', 'update_order'])
  })

  it('editor role plus search:read and products:read scopes', () => {
    expect(allowed(scopesOf(['search:read', 'products:read'], 'editor'))).toEqual(['get_customer', 'list_orders', 'search_products', 'update_order', 'create_ticket', 'search'])
  })

  it('an unknown role does not cancel the token scopes', () => {
    expect(allowed(scopesOf(['products:read'], 'nobody'))).toEqual(['search_products'])
  })

  it('a scope the role already grants changes nothing', () => {
    expect([...scopesOf(['customers:read'], 'read-only')].sort()).toEqual(['customers:read', 'orders:read', 'products:read'])
  })
})

describe('validatePolicy refuses an inconsistent table', () => {
  const variant = (change: (input: PolicyInput) => PolicyInput) => () => validatePolicy(change(POLICY_INPUT))

  it('accepts the policy in force', () => {
    expect(() => validatePolicy(POLICY_INPUT)).not.toThrow()
  })

  it('refuses a tool that requires an unknown scope', () => {
    expect(variant((p) => ({ ...p, tools: { ...p.tools, get_customer: { scope: 'customers:everything' } } }))).toThrow(PolicyError)
    expect(variant((p) => ({ ...p, tools: { ...p.tools, get_customer: { scope: 'customers:everything' } } }))).toThrow(/get_customer.*unknown scope/)
  })

  it('refuses a role that grants an unknown scope', () => {
    expect(variant((p) => ({ ...p, roles: { ...p.roles, auditor: ['audit:read'] } }))).toThrow(/role auditor grants unknown scope "audit:read"/)
  })

  it('refuses a role that grants "*"', () => {
    expect(variant((p) => ({ ...p, roles: { ...p.roles, root: ['*'] } }))).toThrow(PolicyError)
  })

  it('refuses "*" as a scope of the table', () => {
    expect(variant((p) => ({ ...p, scopes: { ...p.scopes, '*': 'everything' } }))).toThrow(/"\*" is not a valid scope name/)
  })

  it('refuses a tool that requires "*"', () => {
    expect(variant((p) => ({ ...p, tools: { ...p.tools, search: { scope: '*' } } }))).toThrow(PolicyError)
  })

  it('refuses a scope name with a space (not an RFC 6749 scope-token)', () => {
    expect(variant((p) => ({ ...p, scopes: { ...p.scopes, 'two words': 'x' } }))).toThrow(PolicyError)
  })

  it('refuses a refusal budget that is not a whole count per positive whole window', () => {
    expect(POLICY_INPUT.refusalBudget).toEqual({ limit: 120, windowSeconds: 60 })
    for (const refusalBudget of [{ limit: -1, windowSeconds: 60 }, { limit: 1.5, windowSeconds: 60 }, { limit: 120, windowSeconds: 0 }, { limit: 120, windowSeconds: Number.NaN }]) {
      expect(variant((p) => ({ ...p, refusalBudget }))).toThrow(/refusalBudget/)
    }
    expect(validatePolicy({ ...POLICY_INPUT, refusalBudget: { limit: 0, windowSeconds: 1 } }).refusalBudget).toEqual({ limit: 0, windowSeconds: 1 })
  })

  it('refuses a scope that no tool requires', () => {
    expect(variant((p) => ({ ...p, scopes: { ...p.scopes, 'unused:read': 'x' } }))).toThrow(/"unused:read" is required by no tool/)
  })

  it('refuses offline_access as a policy scope (so it can never be advertised)', () => {
    expect(
      variant((p) => ({ ...p, scopes: { ...p.scopes, offline_access: 'refresh' }, tools: { ...p.tools, refresh_tool: { scope: 'offline_access' } } })),
    ).toThrow(/"offline_access" cannot be a scope of the policy/)
  })

  it('refuses a tool without a positive timeout', () => {
    expect(variant((p) => ({ ...p, tools: { ...p.tools, search: { scope: 'search:read', timeoutMs: 0 } } }))).toThrow(/search needs a positive timeoutMs/)
  })

  it('expands the admin marker to every scope of the table, including new ones', () => {
    const policy = validatePolicy({
      ...POLICY_INPUT,
      scopes: { ...POLICY_INPUT.scopes, 'reports:read': 'Read reports' },
      tools: { ...POLICY_INPUT.tools, run_report: { scope: 'reports:read' } },
      roles: { ...POLICY_INPUT.roles, admin: ALL_SCOPES },
    })
    expect(policy.roles.get('admin')?.has('reports:read')).toBe(true)
    expect(policy.roles.get('read-only')?.has('reports:read')).toBe(false)
  })
})

describe('supportedScopes', () => {
  it('equals the seven scopes of the table', () => {
    const scopes = supportedScopes(POLICY)
    expect(scopes).toHaveLength(7)
    expect([...scopes].sort()).toEqual([...SEVEN_SCOPES].sort())
  })

  it('never advertises "*"', () => {
    expect(supportedScopes(POLICY)).not.toContain('*')
  })
})

describe('startScopes (the 401 challenge scope)', () => {
  it('is the scopes every role grants: customers:read orders:read for the policy in force', () => {
    expect(startScopes(POLICY)).toEqual(['customers:read', 'orders:read'])
  })

  it('names only scopes each role grants, so a least-privileged caller can always obtain them', () => {
    for (const [role, granted] of POLICY.roles) for (const scope of startScopes(POLICY)) expect(granted.has(scope), `${role} grants ${scope}`).toBe(true)
  })

  it('follows the role table: a new role granting only products:read leaves no common scope, so its smaller set is the start', () => {
    const policy = validatePolicy({ ...POLICY_INPUT, roles: { ...POLICY_INPUT.roles, catalogue: ['products:read'] } })
    expect(startScopes(policy)).toEqual(['products:read'])
  })

  it('shrinks when a role narrows the baseline', () => {
    const policy = validatePolicy({ ...POLICY_INPUT, roles: { ...POLICY_INPUT.roles, support: ['customers:read', 'tickets:write'] } })
    expect(startScopes(policy)).toEqual(['customers:read'])
  })

  it('never contains offline_access or "*"', () => {
    expect(startScopes(POLICY)).not.toContain('offline_access')
    expect(startScopes(POLICY)).not.toContain('*')
    expect(supportedScopes(POLICY)).not.toContain('offline_access')
  })
})
