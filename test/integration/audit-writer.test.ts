// src/audit/writer.ts appendRow against the real AuditSequencer and D1: the
// rows of concurrent calls share append requests, every row is durable when
// its call is answered, and a failed shared append loses no row silently.
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import worker from '../../src/index.ts'
import { sequencer } from '../../src/audit/writer.ts'
import type { AuditSequencer } from '../../src/audit/sequencer.ts'
import { testEnv } from '../support/test-env.ts'
import { mintToken } from '../support/tokens.ts'
import { MCP_URL } from '../support/worker.ts'

const BASE = testEnv(env)

/** The real AUDIT_SEQUENCER namespace, counting appendMany requests and the rows they carry; each reaches the object after `delayMs`. */
function countingSequencers(delayMs = 0) {
  const requests: number[] = []
  const ns = new Proxy(env.AUDIT_SEQUENCER, {
    get(target, property) {
      if (property === 'get') {
        return (id: DurableObjectId) => {
          const stub = target.get(id)
          return new Proxy(stub, {
            get(s, p) {
              if (p === 'appendMany') {
                return async (...args: Parameters<AuditSequencer['appendMany']>) => {
                  requests.push(args[0].length)
                  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
                  return s.appendMany(...args)
                }
              }
              const value = Reflect.get(s, p, s) as unknown
              return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(s) : value
            },
          })
        }
      }
      const value = Reflect.get(target, property, target) as unknown
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    },
  })
  return { ns, requests }
}

async function getCustomer(bindings: Env, token: string, ctx: ExecutionContext): Promise<{ status: number; requestId: string }> {
  const res = await worker.fetch(
    new Request(MCP_URL(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: 'cus_001' } } }),
    }),
    bindings,
    ctx,
  )
  await res.text()
  return { status: res.status, requestId: res.headers.get('x-request-id') ?? '' }
}

const rowsOf = async (ids: readonly string[]) =>
  (await BASE.DB.prepare(`SELECT count(*) AS n FROM audit_log WHERE request_id IN (${ids.map(() => '?').join(', ')})`).bind(...ids).first<number>('n')) ?? 0

describe('audit rows: shared appends, durable before the answer', () => {
  it('sends the rows of 40 concurrent calls in fewer append requests than calls, and keeps all 40', async () => {
    const { ns, requests } = countingSequencers()
    const bindings = { ...BASE, AUDIT_SEQUENCER: ns } as Env
    // one sub each: the policy allows 5 calls of one sub at once
    const tokens = await Promise.all(Array.from({ length: 40 }, (_, i) => mintToken({ role: 'read-only', sub: `batch-${i}-${crypto.randomUUID()}` })))
    const ctx = createExecutionContext()
    const calls = await Promise.all(tokens.map((token) => getCustomer(bindings, token, ctx)))
    await waitOnExecutionContext(ctx)
    expect(calls.every((c) => c.status === 200)).toBe(true)
    expect(requests.reduce((a, b) => a + b, 0)).toBe(40)
    expect(requests.length).toBeLessThan(40)
    expect(await sequencer(BASE, 0).drain()).toBe(0)
    expect(await rowsOf(calls.map((c) => c.requestId))).toBe(40)
  })

  it('has every answered call\'s row in the sequencer before the answer (nothing left in waitUntil)', async () => {
    // a sequencer 200 ms away: an append left to waitUntil would land after the answers
    const { ns } = countingSequencers(200)
    const token = await mintToken({ role: 'read-only', sub: `durable-${crypto.randomUUID()}` })
    const ctx = createExecutionContext()
    const calls = await Promise.all(Array.from({ length: 5 }, () => getCustomer({ ...BASE, AUDIT_SEQUENCER: ns } as Env, token, ctx)))
    // No waitOnExecutionContext: only what happened before each answer.
    expect(await sequencer(BASE, 0).drain()).toBe(0)
    expect(calls.every((c) => c.status === 200)).toBe(true)
    expect(await rowsOf(calls.map((c) => c.requestId))).toBe(5)
    await waitOnExecutionContext(ctx)
  })

  it('logs every row of a failed shared append as audit_write_failed with its record, never drops one silently', async () => {
    const failing = new Proxy(env.AUDIT_SEQUENCER, {
      get(target, property) {
        if (property === 'get') return () => ({ appendMany: () => Promise.reject(new Error('Network connection lost.')) })
        const value = Reflect.get(target, property, target) as unknown
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
      },
    })
    const lines: string[] = []
    const original = console.error
    console.error = (...a: unknown[]) => lines.push(a.map(String).join(' '))
    try {
      const tokens = await Promise.all(Array.from({ length: 12 }, (_, i) => mintToken({ role: 'read-only', sub: `fail-${i}-${crypto.randomUUID()}` })))
      const ctx = createExecutionContext()
      const calls = await Promise.all(tokens.map((token) => getCustomer({ ...BASE, AUDIT_SEQUENCER: failing } as Env, token, ctx)))
      await waitOnExecutionContext(ctx)
      const failed = lines.filter((l) => l.includes('"audit_write_failed"'))
      for (const call of calls) expect(failed.filter((l) => l.includes(call.requestId))).toHaveLength(1)
    } finally {
      console.error = original
    }
  })
})
