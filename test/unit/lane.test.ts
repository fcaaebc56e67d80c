// src/lane.ts: items one request sends for others. Plain promises stand in
// for the store (the real stores are in the integration tests: the limiter's
// carried releases in limits-contract.test.ts, audit rows in audit-writer.test.ts).
import { describe, expect, it } from 'vitest'
import { deliver, laneOf, sendWaiting } from '../../src/lane.ts'

const fast = { waitMs: 0, pollMs: 1, timeoutMs: 1000 }

describe('lane: one request sends what others queued', () => {
  it('delivers 50 items queued at once in fewer sends than items, each exactly once', async () => {
    const lane = laneOf<number>({}, 'x')
    const sent: number[][] = []
    const send = async (items: number[]) => {
      sent.push(items)
      await new Promise((r) => setTimeout(r, 5))
    }
    await Promise.all(Array.from({ length: 50 }, (_, i) => deliver(lane, i, { ...fast, onFailure: 'reject' }, send)))
    expect(sent.length).toBeLessThan(50)
    expect(sent.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i))
  })

  it('an item taken by another sender is delivered by that send: its owner sends nothing', async () => {
    const lane = laneOf<string>({}, 'carry')
    const alone: string[][] = []
    const owner = deliver(lane, 'release-a', { waitMs: 20, pollMs: 1, timeoutMs: 1000, onFailure: 'resend' }, async (items) => void alone.push(items))
    const carried = await sendWaiting(lane, async (items) => items)
    await owner
    expect(carried).toEqual(['release-a'])
    expect(alone).toEqual([])
  })

  it('resends an idempotent item whose carrier failed', async () => {
    const lane = laneOf<string>({}, 'resend')
    const alone: string[][] = []
    const owner = deliver(lane, 'release-b', { waitMs: 20, pollMs: 1, timeoutMs: 1000, onFailure: 'resend' }, async (items) => void alone.push(items))
    await expect(sendWaiting(lane, async () => Promise.reject(new Error('store down')))).rejects.toThrow('store down')
    await owner
    expect(alone).toEqual([['release-b']])
  })

  it('tells the owner, never resends, when the carrier of a non-idempotent item failed or did not answer in time', async () => {
    const failed = laneOf<string>({}, 'reject-failed')
    const owner = deliver(failed, 'row-1', { waitMs: 20, pollMs: 1, timeoutMs: 1000, onFailure: 'reject' }, async () => {
      throw new Error('must not resend')
    })
    await expect(sendWaiting(failed, async () => Promise.reject(new Error('sequencer down')))).rejects.toThrow()
    await expect(owner).rejects.toThrow('the request that carried this item failed')

    const hung = laneOf<string>({}, 'reject-hung')
    const late = deliver(hung, 'row-2', { waitMs: 5, pollMs: 1, timeoutMs: 30, onFailure: 'reject' }, async () => {
      throw new Error('must not resend')
    })
    void sendWaiting(hung, () => new Promise(() => {}))
    await expect(late).rejects.toThrow('did not answer in time')
  })
})
