// The policy's confirm rules (src/policy/confirm.ts), their validation in the
// policy table and in declarations, and the CONFIRM_* settings (config.ts).
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config.ts'
import { confirmRuleProblem, needsConfirmation } from '../../src/policy/confirm.ts'
import { POLICY, POLICY_INPUT, validatePolicy } from '../../src/policy/policy.ts'
import { checkDeclarations } from '../../src/tools/declared.ts'

describe('needsConfirmation', () => {
  it('the shipped policy confirms cancelling an order, and no other move or tool', () => {
    const rule = POLICY.tools.get('update_order')!.confirm
    expect(needsConfirmation(rule, { orderId: 'ord_0001', status: 'cancelled' })).toBe(true)
    for (const status of ['pending', 'paid', 'shipped', 'delivered', 'Cancelled', ' cancelled']) expect(needsConfirmation(rule, { orderId: 'ord_0001', status }), status).toBe(false)
    for (const [name, settings] of POLICY.tools) if (name !== 'update_order') expect(settings.confirm, name).toBeUndefined()
  })

  it('true confirms every call; a rule of several arguments needs all of them to match', () => {
    expect(needsConfirmation(true, {})).toBe(true)
    const rule = { when: { status: ['cancelled'], force: [true] } }
    expect(needsConfirmation(rule, { status: 'cancelled', force: true })).toBe(true)
    expect(needsConfirmation(rule, { status: 'cancelled', force: 'true' })).toBe(false)
    expect(needsConfirmation(rule, { status: 'cancelled' })).toBe(false)
    expect(needsConfirmation(undefined, { status: 'cancelled' })).toBe(false)
    expect(needsConfirmation(rule, null)).toBe(false)
  })
})

describe('a malformed confirm rule stops the policy from loading', () => {
  it.each([
    ['false', false, 'must be true or { when: { argument: [values] } }'],
    ['an empty when', { when: {} }, 'when must name at least one argument'],
    ['an empty list', { when: { status: [] } }, 'when.status must list at least one value'],
    ['an object value', { when: { status: [{}] } }, 'when.status may list only strings, numbers and booleans'],
  ])('%s', (_, rule, problem) => {
    expect(confirmRuleProblem(rule)).toBe(problem)
    const input = { ...POLICY_INPUT, tools: { ...POLICY_INPUT.tools, update_order: { scope: 'orders:write', confirm: rule as never } } }
    expect(() => validatePolicy(input)).toThrow(`policy: tool update_order confirm ${problem}`)
  })
})

describe('confirm in a declared tool', () => {
  const tool = (access: 'read' | 'write', confirm: unknown) => ({
    close_ticket: { title: 'Close', description: 'Close a ticket', scope: 'tickets:write', access, sql: access === 'write' ? "UPDATE tickets SET status = 'closed' WHERE id = :id" : 'SELECT id FROM tickets WHERE id = :id', parameters: { id: { type: 'string', description: 'ticket id' } }, ...(access === 'read' ? { result: { row: 'ticket', notFound: 'no such ticket' } } : {}), confirm },
  })
  it('is refused on a read, and must be a boolean', () => {
    expect(checkDeclarations(tool('read', true) as never, new Set(['tickets:write']))).toEqual([{ tool: 'close_ticket', field: ['confirm'], message: 'only a write is confirmed: a read changes nothing' }])
    expect(checkDeclarations(tool('write', 'yes') as never, new Set(['tickets:write']))).toEqual([{ tool: 'close_ticket', field: ['confirm'], message: 'must be true or false' }])
    expect(checkDeclarations(tool('write', true) as never, new Set(['tickets:write']))).toEqual([])
  })
})

describe('CONFIRM_STATE_KEY and CONFIRM_TTL_SECONDS', () => {
  const base = { AUTH_ISSUER: 'https://issuer.test', AUTH_AUDIENCE: 'https://bastion.test/mcp', AUTH_JWKS: JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] }) }
  it('unset: no confirmations (such calls are refused at call time)', () => {
    const r = parseConfig(base)
    expect(r.ok && r.config.confirm).toBeUndefined()
  })
  it('a key of 32+ characters, with a TTL of 120 s by default', () => {
    const r = parseConfig({ ...base, CONFIRM_STATE_KEY: 'k'.repeat(32) })
    expect(r.ok && r.config.confirm).toEqual({ key: 'k'.repeat(32), ttlSeconds: 120 })
  })
  it.each([
    ['a short key', { CONFIRM_STATE_KEY: 'k'.repeat(31) }, 'CONFIRM_STATE_KEY', 'must be at least 32 characters (a random secret: openssl rand -base64 32)'],
    ['a zero TTL', { CONFIRM_TTL_SECONDS: '0' }, 'CONFIRM_TTL_SECONDS', 'must be an integer from 1 to 300'],
    ['a TTL over five minutes (a 2025-era question holds a concurrency lease that long)', { CONFIRM_TTL_SECONDS: '301' }, 'CONFIRM_TTL_SECONDS', 'must be an integer from 1 to 300'],
  ])('refuses %s', (_, extra, setting, problem) => {
    expect(parseConfig({ ...base, ...extra })).toEqual({ ok: false, setting, problem })
  })
})
