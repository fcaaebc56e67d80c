// list_orders under the output cap: when the cap drops rows, nextCursor must
// resume right after the last row returned, so that no dropped row is skipped.
import { describe, expect, it } from 'vitest'
import { decodeCursor, encodeCursor, listOrders } from '../../src/tools/list-orders.ts'

const order = (i: number) => ({
  id: `ord_${String(1000 - i).padStart(4, '0')}`,
  customer_id: 'cus_001',
  product_id: 'prd_001',
  quantity: 1,
  total_cents: 100,
  status: 'paid' as const,
  note: null,
  created_at: `2026-01-${String(28 - Math.floor(i / 4)).padStart(2, '0')}T09:00:00Z`,
  updated_at: '2026-01-28T09:00:00Z',
})
const page = Array.from({ length: 100 }, (_, i) => order(i))
const output = { orders: page, nextCursor: encodeCursor({ createdAt: page[99]!.created_at, id: page[99]!.id }) }
const resume = listOrders.resumeAfterCap!

describe('list_orders resumeAfterCap', () => {
  it('points nextCursor after the last row returned when the cap dropped rows', () => {
    const capped = resume({ orders: page.slice(0, 37), nextCursor: output.nextCursor }, output, { limit: 100 })
    expect(capped.orders).toHaveLength(37)
    expect(decodeCursor(capped.nextCursor!)).toEqual({ createdAt: page[36]!.created_at, id: page[36]!.id })
  })

  it('adds a nextCursor to a last page whose tail was dropped', () => {
    const last = { orders: page.slice(0, 60) }
    const capped = resume({ orders: page.slice(0, 10) }, last, { limit: 100 })
    expect(decodeCursor(capped.nextCursor!)).toEqual({ createdAt: page[9]!.created_at, id: page[9]!.id })
  })

  it('leaves a page whose rows all survived as it is', () => {
    const capped = { orders: page, nextCursor: output.nextCursor }
    expect(resume(capped, output, { limit: 100 })).toBe(capped)
  })

  it('resumes where the page started when no row was kept', () => {
    const cursor = encodeCursor({ createdAt: '2026-02-01T00:00:00Z', id: 'ord_2000' })
    expect(decodeCursor(resume({ orders: [], nextCursor: output.nextCursor }, output, { limit: 100, cursor }).nextCursor!)).toEqual(decodeCursor(cursor))
    // first page: a cursor that sorts after every timestamp, i.e. from the start
    const fromStart = decodeCursor(resume({ orders: [], nextCursor: output.nextCursor }, output, { limit: 100 }).nextCursor!)
    expect(page.every((o) => o.created_at < fromStart.createdAt)).toBe(true)
  })
})
