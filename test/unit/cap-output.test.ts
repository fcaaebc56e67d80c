// Unit tests of output capping: small values untouched, big ones cut to fit
// the cap with their shape intact (same keys, arrays stay arrays), cuts
// deterministic and as small as the binary search allows, and the notice.
import { describe, expect, it } from 'vitest'
import { prng as mulberry32 } from '../../scripts/demo-data.ts'
import { capStructured, STRING_MARKER, truncationMarker, type CapResult } from '../../src/limits/cap-output.ts'
import { estimateTokens } from '../../src/limits/estimate.ts'

const pad = (n: number, w: number) => String(n).padStart(w, '0')

function order(i: number) {
  return {
    id: `ord_${pad(i + 1, 4)}`,
    customer_id: `cus_${pad((i * 7) % 60 + 1, 3)}`,
    product_id: `prd_${pad((i * 13) % 120 + 1, 3)}`,
    quantity: 1 + (i % 5),
    total_cents: (1 + (i % 5)) * (2900 + 250 * (i % 40)),
    status: ['pending', 'paid', 'shipped', 'delivered', 'cancelled'][i % 5]!,
    note: i % 3 === 0 ? 'gift wrap requested' : null,
    created_at: '2026-01-06T09:00:00Z',
  }
}

const tokensOf = (v: unknown) => estimateTokens(JSON.stringify(v))

/** Same JSON shape: same keys everywhere, arrays stay arrays, same leaf types. */
function expectSameShape(original: unknown, capped: unknown, path = '$'): void {
  if (Array.isArray(original)) {
    expect(Array.isArray(capped), path).toBe(true)
    const items = capped as unknown[]
    expect(items.length, path).toBeLessThanOrEqual(original.length)
    items.forEach((item, i) => expectSameShape(original[i], item, `${path}[${i}]`))
  } else if (original !== null && typeof original === 'object') {
    expect(capped !== null && typeof capped === 'object' && !Array.isArray(capped), path).toBe(true)
    expect(Object.keys(capped as object), path).toEqual(Object.keys(original))
    for (const key of Object.keys(original)) {
      expectSameShape((original as Record<string, unknown>)[key], (capped as Record<string, unknown>)[key], `${path}.${key}`)
    }
  } else if (typeof original === 'string') {
    expect(typeof capped, path).toBe('string')
    const s = capped as string
    if (s !== original) {
      expect(s.endsWith(STRING_MARKER), path).toBe(true)
      expect(original.startsWith(s.slice(0, -STRING_MARKER.length)), path).toBe(true)
    }
  } else {
    expect(capped, path).toEqual(original)
  }
}


/** A random JSON tree: nested objects and arrays, strings of varied length. */
function randomTree(rand: () => number, depth: number): unknown {
  const r = rand()
  if (depth <= 0 || r < 0.3) {
    if (r < 0.1) return Math.floor(rand() * 1e6)
    if (r < 0.15) return null
    if (r < 0.2) return rand() < 0.5
    return 'lorem ipsum dolor sit amet, '.repeat(Math.floor(rand() * rand() * 60)) + String(Math.floor(rand() * 1000))
  }
  if (r < 0.65) return Array.from({ length: Math.floor(rand() * rand() * 25) }, () => randomTree(rand, depth - 1))
  const out: Record<string, unknown> = {}
  const keys = 1 + Math.floor(rand() * 5)
  for (let k = 0; k < keys; k++) out[`k${k}_${Math.floor(rand() * 100)}`] = randomTree(rand, depth - 1)
  return out
}

describe('capStructured', () => {
  it('returns a value within the cap unchanged (the same object)', () => {
    const value = { customer: { id: 'cus_001', name: 'Ada Lovelace' }, orders: [order(0), order(1)] }
    const r = capStructured(value, 10_000)
    expect(r.value).toBe(value)
    expect(r).toMatchObject({ truncated: false, droppedItems: 0, shortenedStrings: 0 })
    expect(r.originalTokens).toBe(tokensOf(value))
    expect(r.returnedTokens).toBe(r.originalTokens)
  })

  it('cuts a 5000-row array to the longest prefix that fits', () => {
    const rows = Array.from({ length: 5000 }, (_, i) => order(i))
    const value = { orders: rows, nextCursor: 'eyJvZmZzZXQiOjUwMDB9', total: 5000 }
    const snapshot = JSON.stringify(value)
    const r = capStructured(value, 10_000)

    expect(r.truncated).toBe(true)
    expect(r.returnedTokens).toBeLessThanOrEqual(10_000)
    expect(r.returnedTokens).toBe(tokensOf(r.value))
    expect(r.originalTokens).toBe(tokensOf(value))
    const kept = r.value.orders.length
    expect(kept).toBeGreaterThan(50)
    expect(r.value.orders).toEqual(rows.slice(0, kept))
    expect(r.droppedItems).toBe(5000 - kept)
    expect(r.totalItems).toBe(5000)
    expect(r.shortenedStrings).toBe(0)
    expect(r.value.nextCursor).toBe(value.nextCursor)
    expect(r.value.total).toBe(5000)
    // the binary search keeps as many rows as fit: one more would not
    expect(tokensOf({ ...r.value, orders: rows.slice(0, kept + 1) })).toBeGreaterThan(10_000)
    expect(JSON.stringify(value)).toBe(snapshot) // the input is not modified
  })

  it('shortens a single huge string with a visible marker', () => {
    const notes = 'The customer called about the delayed shipment. '.repeat(20_000)
    const value = { customer: { id: 'cus_001', notes }, ok: true }
    const r = capStructured(value, 2_000)
    expect(r.truncated).toBe(true)
    expect(r.shortenedStrings).toBe(1)
    expect(r.droppedItems).toBe(0)
    expect(r.returnedTokens).toBeLessThanOrEqual(2_000)
    expect(r.returnedTokens).toBeGreaterThan(1_900) // cut no more than needed
    expect(r.value.customer.notes.endsWith(STRING_MARKER)).toBe(true)
    expect(notes.startsWith(r.value.customer.notes.slice(0, -STRING_MARKER.length))).toBe(true)
    expect(r.value.customer.id).toBe('cus_001')
    expectSameShape(value, r.value)
  })

  it('keeps one item and shortens its string before emptying an array', () => {
    const value = { results: [{ title: 'Quarterly report', body: 'lorem ipsum '.repeat(50_000) }] }
    const r = capStructured(value, 1_000)
    expect(r.value.results).toHaveLength(1)
    expect(r.value.results[0]!.title).toBe('Quarterly report')
    expect(r.shortenedStrings).toBe(1)
    expect(r.returnedTokens).toBeLessThanOrEqual(1_000)
  })

  it('cuts nested arrays (row arrays inside a result) and keeps the shape', () => {
    const rows = Array.from({ length: 2000 }, (_, i) => {
      const o = order(i)
      return [o.id, o.status, o.total_cents, o.created_at]
    })
    const value = { columns: ['id', 'status', 'total_cents', 'created_at'], rows, rowCount: 2000 }
    const r = capStructured(value, 3_000)
    expect(r.returnedTokens).toBeLessThanOrEqual(3_000)
    expect(r.value.columns).toEqual(value.columns)
    expect(r.value.rows.length).toBeGreaterThan(10)
    for (const row of r.value.rows) expect(row).toHaveLength(4) // outer array cut first, rows whole
    expectSameShape(value, r.value)

    const groups = {
      groups: Array.from({ length: 3 }, (_, g) => ({ name: `group ${g}`, orders: Array.from({ length: 800 }, (_, i) => order(g * 1000 + i)) })),
    }
    const rg = capStructured(groups, 4_000)
    expect(rg.returnedTokens).toBeLessThanOrEqual(4_000)
    expect(rg.droppedItems).toBeGreaterThan(0)
    expectSameShape(groups, rg.value)
  })

  it('is deterministic', () => {
    const value = { a: Array.from({ length: 300 }, (_, i) => order(i)), b: 'x'.repeat(9_000), c: [[1, 2, 3], ['y'.repeat(5000)]] }
    const one = capStructured(value, 1_500)
    const two = capStructured(value, 1_500)
    expect(JSON.stringify(one)).toBe(JSON.stringify(two))
  })

  it('never splits a surrogate pair', () => {
    const value = { text: '😀🎉'.repeat(20_000) }
    const r = capStructured(value, 500)
    expect(r.returnedTokens).toBeLessThanOrEqual(500)
    expect(r.value.text.slice(0, -STRING_MARKER.length)).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/)
  })

  it('returns the smallest shape, flagged, when nothing fits', () => {
    const value = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`field_${i}`, i]))
    const r = capStructured(value, 100)
    expect(r.truncated).toBe(true)
    expect(r.returnedTokens).toBeGreaterThan(100)
    expect(Object.keys(r.value)).toHaveLength(3000)

    const withArrays = { keys: Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, 'v'.repeat(100)])), items: [1, 2, 3] }
    const r2 = capStructured(withArrays, 50)
    expect(r2.value.items).toEqual([])
    expectSameShape(withArrays, r2.value)
  })

  it('always ends within the cap when a smaller shape exists (random trees)', () => {
    const rand = mulberry32(20261125)
    for (let t = 0; t < 60; t++) {
      const value = { data: randomTree(rand, 5) }
      const cap = 50 + Math.floor(rand() * 3000)
      const r = capStructured(value, cap)
      expect(r.returnedTokens).toBe(tokensOf(r.value))
      expectSameShape(value, r.value)
      if (r.truncated) {
        // the smallest shape of a tree of nulls and numbers may still be over
        if (r.returnedTokens > cap) expect(r.value).toEqual(capStructured(value, 0).value)
        else expect(r.returnedTokens).toBeLessThanOrEqual(cap)
      } else {
        expect(r.value).toBe(value)
      }
    }
  })

  it('cuts ~1 MB of rows (speed: scripts/bench/estimate.ts)', () => {
    const value = { orders: Array.from({ length: 5000 }, (_, i) => order(i)), note: 'x' }
    expect(JSON.stringify(value).length).toBeGreaterThan(800_000)
    const r = capStructured(value, 10_000)
    expect(r.returnedTokens).toBeLessThanOrEqual(10_000)
    expect(r.value.note).toBe('x')
  })
})

describe('truncationMarker', () => {
  const base: CapResult<unknown> = { value: {}, truncated: true, originalTokens: 23_417, returnedTokens: 9_980, droppedItems: 180, shortenedStrings: 0, totalItems: 500 }

  it('says how much was over and what was dropped, on one line', () => {
    expect(truncationMarker(base, 10_000)).toBe(
      '[output truncated: about 23,400 tokens exceeded the 10,000-token cap; 180 of 500 items dropped — narrow the query or use a smaller limit]',
    )
  })

  it('mentions shortened strings and the impossible case', () => {
    expect(truncationMarker({ ...base, droppedItems: 0, totalItems: 0, shortenedStrings: 1, originalTokens: 310_222 }, 10_000)).toBe(
      `[output truncated: about 310,000 tokens exceeded the 10,000-token cap; 1 long string shortened (marked ${STRING_MARKER}) — narrow the query or use a smaller limit]`,
    )
    const over = truncationMarker({ ...base, droppedItems: 3, totalItems: 3, shortenedStrings: 2, returnedTokens: 12_000 }, 10_000)
    expect(over).toContain('3 of 3 items dropped, 2 long strings shortened')
    expect(over).toContain('still over the cap at its smallest shape')
    expect(over).not.toContain('\n')
  })

  it('is empty when nothing was cut', () => {
    expect(truncationMarker({ ...base, truncated: false }, 10_000)).toBe('')
  })

  it('matches a real result', () => {
    const value = { orders: Array.from({ length: 500 }, (_, i) => order(i)) }
    const r = capStructured(value, 10_000)
    expect(truncationMarker(r, 10_000)).toMatch(
      /^\[output truncated: about [\d,]+ tokens exceeded the 10,000-token cap; [\d,]+ of 500 items dropped — narrow the query or use a smaller limit\]$/,
    )
  })
})
