// Token budgets (INTERFACE "Limits"): arguments over the budget are refused
// before the tool runs; output over the cap is truncated with a visible
// marker and flagged in _meta, and what remains still fits the cap.
import { env } from 'cloudflare:workers'
import { countTokens as cl100k } from 'gpt-tokenizer/encoding/cl100k_base'
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base'
import { afterEach, describe, expect, it } from 'vitest'
import { estimateTokens } from '../../src/limits/estimate.ts'
import { POLICY, type Policy } from '../../src/policy/policy.ts'
import { connectClient } from '../support/worker.ts'

type TextBlock = { type: 'text'; text: string }
type Truncation = { limitTokens: number; originalTokens: number; returnedTokens: number; droppedItems: number }

/** Estimated and real (o200k, cl100k) tokens of the whole result as sent: text content plus structuredContent. */
function sent(result: { content: unknown; structuredContent?: unknown }) {
  const parts = [(result.content as TextBlock[])[0]!.text, JSON.stringify(result.structuredContent)]
  const sum = (count: (s: string) => number) => parts.reduce((n, p) => n + count(p), 0)
  return { estimate: sum(estimateTokens), o200k: sum(o200k), cl100k: sum(cl100k) }
}
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
    const meta = (result._meta as Record<string, Truncation>)['io.bastion/truncation']!
    expect(meta.limitTokens).toBe(10_000)
    expect(meta.originalTokens).toBeGreaterThan(10_000)
    expect(meta.returnedTokens).toBeLessThanOrEqual(10_000)
    const structured = result.structuredContent as { rows: { id: string }[] }
    expect(structured.rows.length).toBe(300 - meta.droppedItems)
    expect(structured.rows[0]!.id).toBe('ord_0001')
    // the cap holds for the whole result as sent, and _meta reports that whole
    expect(sent(result).estimate).toBe(meta.returnedTokens)
  })

  it('caps the whole list_orders result at 10,000 real tokens with 55 braille notes, and its cursor skips no row', async () => {
    const braille = (i: number) => Array.from({ length: 500 }, (_, k) => String.fromCodePoint(0x2800 + ((i * 37 + k * 11) % 256))).join('')
    const newest = await env.DB.prepare('SELECT id, note FROM orders ORDER BY created_at DESC, id DESC LIMIT 100').all<{ id: string; note: string | null }>()
    const ordered = newest.results.map((r) => r.id)
    const noted = newest.results.filter((_, i) => i % 2 === 0 || i >= 90).slice(0, 55)
    await env.DB.batch(noted.map((r, i) => env.DB.prepare('UPDATE orders SET note = ?1 WHERE id = ?2').bind(braille(i), r.id)))
    try {
      const client = await connectClient({ role: 'read-only', sub: 'budget-braille' })
      const first = await client.callTool({ name: 'list_orders', arguments: { limit: 100 } })
      expect(first.isError).toBeFalsy()
      const meta = (first._meta as Record<string, Truncation>)['io.bastion/truncation']!
      const whole = sent(first)
      expect(meta.limitTokens).toBe(10_000)
      expect(meta.returnedTokens).toBe(whole.estimate)
      expect(whole.estimate).toBeLessThanOrEqual(10_000)
      expect(Math.max(whole.o200k, whole.cl100k)).toBeLessThanOrEqual(11_000)

      // the next page starts right after the last row returned, not after the last row fetched
      const page1 = first.structuredContent as { orders: { id: string }[]; nextCursor?: string }
      expect(meta.droppedItems).toBeGreaterThan(0)
      expect(page1.orders.map((o) => o.id)).toEqual(ordered.slice(0, page1.orders.length))
      const second = await client.callTool({ name: 'list_orders', arguments: { limit: 100, cursor: page1.nextCursor } })
      await client.close()
      const page2 = second.structuredContent as { orders: { id: string }[] }
      expect(page2.orders[0]!.id).toBe(ordered[page1.orders.length])
    } finally {
      await env.DB.batch(noted.map((r) => env.DB.prepare('UPDATE orders SET note = ?1 WHERE id = ?2').bind(r.note, r.id)))
    }
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
