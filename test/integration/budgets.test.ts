// Token budgets (INTERFACE "Limits"): arguments over the budget are refused
// before the tool runs; output over the cap is truncated with a visible
// marker and flagged in _meta, and what remains still fits the cap.
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it } from 'vitest'
import { estimateTokens } from '../../src/limits/estimate.ts'
import { POLICY, type Policy } from '../../src/policy/policy.ts'
import { connectClient } from '../support/worker.ts'

type TextBlock = { type: 'text'; text: string }
const mutablePolicy = POLICY as { -readonly [K in keyof Policy]: Policy[K] }
const originalBudget = POLICY.maxArgumentTokens

afterEach(() => {
  mutablePolicy.maxArgumentTokens = originalBudget
})

describe('output cap', () => {
  it('truncates an execute_query result over 10,000 tokens to fit, with a marker and _meta', async () => {
    const client = await connectClient({ role: 'admin', sub: 'budget-output' })
    const result = await client.callTool({ name: 'execute_query', arguments: { query: 'SELECT * FROM orders ORDER BY id' } })
    await client.close()
    expect(result.isError).toBeFalsy()
    const text = (result.content as TextBlock[])[0]!.text
    expect(text).toMatch(/\[output truncated: about [\d,]+ tokens exceeded the 10,000-token cap; \d+ of 300 items dropped/)
    const meta = (result._meta as Record<string, { limitTokens: number; originalTokens: number; returnedTokens: number; droppedItems: number }>)['io.bastion/truncation']!
    expect(meta.limitTokens).toBe(10_000)
    expect(meta.originalTokens).toBeGreaterThan(10_000)
    expect(meta.returnedTokens).toBeLessThanOrEqual(10_000)
    const structured = result.structuredContent as { rows: { id: string }[] }
    expect(structured.rows.length).toBe(300 - meta.droppedItems)
    expect(structured.rows[0]!.id).toBe('ord_0001')
    expect(estimateTokens(JSON.stringify(structured))).toBeLessThanOrEqual(10_000)
  })

  it('leaves a result under the cap untouched', async () => {
    const client = await connectClient({ role: 'admin', sub: 'budget-small' })
    const result = await client.callTool({ name: 'list_orders', arguments: { limit: 5 } })
    await client.close()
    expect(result._meta?.['io.bastion/truncation']).toBeUndefined()
    expect((result.structuredContent as { orders: unknown[] }).orders).toHaveLength(5)
  })
})

describe('argument budget', () => {
  it('refuses arguments over the budget before the tool runs, naming the limit', async () => {
    mutablePolicy.maxArgumentTokens = 5
    const before = await env.DB.prepare('SELECT count(*) AS n FROM tickets').first<number>('n')
    const client = await connectClient({ role: 'admin', sub: 'budget-args' })
    const result = await client.callTool({ name: 'create_ticket', arguments: { customerId: 'cus_001', subject: 'a subject long enough', body: 'a body that is clearly more than five tokens long' } })
    await client.close()
    expect(result.isError).toBe(true)
    expect((result.content as TextBlock[])[0]!.text).toMatch(/^arguments are about \d+ tokens; the limit is 5 tokens per call$/)
    expect(await env.DB.prepare('SELECT count(*) AS n FROM tickets').first<number>('n')).toBe(before)
  })
})
