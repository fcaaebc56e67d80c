import { describe, expect, it } from 'vitest'
import { PendingWork } from '../../src/limits/pending-work.ts'

describe('PendingWork: what holds a request\'s concurrency leases', () => {
  it('settles only after every piece of work has, failures included', async () => {
    const pending = new PendingWork()
    const order: string[] = []
    let finishA!: () => void
    let failB!: (e: Error) => void
    pending.add(new Promise<void>((resolve) => { finishA = resolve }).then(() => { order.push('a') }))
    pending.add(new Promise<void>((_, reject) => { failB = reject }).catch((e: unknown) => { order.push('b'); throw e }))
    const settled = pending.settled().then(() => order.push('settled'))
    failB(new Error('statement failed'))
    await new Promise((r) => setTimeout(r, 5))
    expect(order).toEqual(['b'])
    finishA()
    await settled
    expect(order).toEqual(['b', 'a', 'settled'])
  })

  it('also waits for work added while it is waiting, from many callers at once', async () => {
    const pending = new PendingWork()
    const finishers: (() => void)[] = []
    const add = () => pending.add(new Promise<void>((resolve) => finishers.push(resolve)))
    add()
    let done = false
    const settled = pending.settled().then(() => { done = true })
    for (let i = 0; i < 50; i++) add()
    finishers[0]!()
    await new Promise((r) => setTimeout(r, 5))
    expect(done).toBe(false)
    for (const finish of finishers) finish()
    await settled
    expect(done).toBe(true)
  })

  it('settles at once when nothing was added', async () => {
    await expect(new PendingWork().settled()).resolves.toBeUndefined()
  })
})
