// Output capping: shrinks a tool's structured result until its JSON fits a
// token budget (estimateTokens), keeping its shape so that it still validates
// against the tool's output schema: every object keeps every key, arrays stay
// arrays (shorter), strings stay strings (shorter, ending in a visible marker).
//
// Order of cuts, each tried only while the result is still over the cap:
//   1. trailing items of the largest arrays (by serialized size, anywhere in
//      the tree, largest first), keeping at least one item in each;
//   2. the longest strings, all cut to one common length L (the largest L
//      that fits) and suffixed with STRING_MARKER;
//   3. arrays again, now down to zero items (with the strings as they were
//      before step 2), then step 2 again, down to 16 characters a string.
// Then, if cutting an outer array first left room once inner ones were cut
// too, trailing items are given back while the value fits.
// Step 1 keeps an item so that {results: [{body: <100 KB>}]} returns its one
// result with a shortened body rather than an empty list.
// If even empty arrays and minimal strings do not fit (an object with
// thousands of keys), that smallest shape is returned, truncated: true.
// Known weakness: in deep trees whose first item alone is over the cap even
// with its inner arrays at one item, step 3 empties the outer array and the
// result can end well under the cap (never over it).
//
// Cost: how many items to keep and the string length L are found by binary
// search; every probe re-serializes the whole value, but probes converge
// towards the cap's size, so a 0.85 MB, 5000-row result takes ~18 ms, not one
// pass per item. Deterministic: same input, same output.
import { estimateTokens } from './estimate.ts'

export interface CapResult<T> {
  value: T
  truncated: boolean
  /** Estimated tokens of the original value's JSON. */
  originalTokens: number
  /** Estimated tokens of the returned value's JSON. */
  returnedTokens: number
  /** Array items removed (items inside removed items are not counted again). */
  droppedItems: number
  /** Strings cut short and marked. */
  shortenedStrings: number
  /** Items the cut arrays held before cutting (for "180 of 500 dropped"). */
  totalItems?: number
}

/** Appended to every shortened string. */
export const STRING_MARKER = '…[truncated]'

/** Strings are never cut below this many characters (plus the marker). */
const MIN_STRING_CHARS = 16

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type Container = Json[] | { [key: string]: Json }

/** Every array cut so far, with its items before the first cut, in cut order. */
type Originals = Map<Json[], readonly Json[]>

const measure = (root: Json): number => estimateTokens(JSON.stringify(root))

/**
 * Approximate serialized size in characters (one walk, no stringify); with
 * `out`, also lists every array with its size, outer arrays first.
 */
function sizeOf(node: Json, out?: { arr: Json[]; size: number }[]): number {
  if (node === null || typeof node !== 'object') {
    return typeof node === 'string' ? node.length + 2 : String(node).length
  }
  if (Array.isArray(node)) {
    let size = 2
    const entry = { arr: node, size: 0 }
    out?.push(entry)
    for (const item of node) size += sizeOf(item, out) + 1
    entry.size = size
    return size
  }
  let size = 2
  for (const key of Object.keys(node)) size += key.length + 4 + sizeOf(node[key]!, out)
  return size
}

/** Makes `arr` hold its current first `from` items plus items[from..to). */
function fill(arr: Json[], items: readonly Json[], from: number, to: number): void {
  arr.length = Math.min(arr.length, from)
  for (let i = arr.length; i < to; i++) arr.push(items[i]!)
}

/** Drops trailing array items, largest arrays first, keeping `minKeep` in each. */
function cutArrays(root: Json, max: number, minKeep: number, originals: Originals, tokensNow: number): number {
  let tokens = tokensNow
  while (tokens > max) {
    const arrays: { arr: Json[]; size: number }[] = []
    sizeOf(root, arrays)
    let target: Json[] | undefined
    let best = -1
    for (const a of arrays) {
      if (a.arr.length > minKeep && a.size > best) {
        best = a.size
        target = a.arr
      }
    }
    if (!target) break
    const full = target.slice()
    if (!originals.has(target)) originals.set(target, full)

    // Probe the floor first: when even `minKeep` items do not fit, the
    // rest of the tree is over by itself, so cut and go to the next array.
    fill(target, full, minKeep, minKeep)
    // largest k in (minKeep, length - 1] whose whole value still fits
    const keep =
      measure(root) <= max
        ? largestFitting(minKeep + 1, full.length - 1, minKeep, (k) => {
            fill(target, full, minKeep, k)
            return measure(root) <= max
          })
        : minKeep
    fill(target, full, minKeep, keep)
    tokens = measure(root)
  }
  return tokens
}

/** Binary search: the largest k in [lo, hi] with fits(k) (fits is monotone), else `none`. */
function largestFitting(lo: number, hi: number, none: number, fits: (k: number) => boolean): number {
  let best = none
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (fits(mid)) {
      best = mid
      lo = mid + 1
    } else {
      hi = mid - 1
    }
  }
  return best
}

/**
 * Cutting the outer array first can leave room once inner arrays were cut
 * too: give back trailing items (as they were) while the value still fits.
 * The search is bounded by 16 characters a spare token, so it never
 * re-serializes megabytes of items that cannot fit.
 */
function regrow(root: Json, max: number, originals: Originals, tokensNow: number): number {
  let tokens = tokensNow
  const present: { arr: Json[]; size: number }[] = []
  sizeOf(root, present)
  const reachable = new Set(present.map((a) => a.arr))
  for (const [arr, items] of originals) {
    if (tokens >= max) break
    if (!reachable.has(arr)) continue
    const have = arr.length
    let budget = (max - tokens) * 16
    let hi = have
    while (hi < items.length) {
      budget -= sizeOf(items[hi]!) + 1
      if (budget < 0) break
      hi++
    }
    const keep = largestFitting(have + 1, hi, have, (k) => {
      fill(arr, items, have, k)
      return measure(root) <= max
    })
    fill(arr, items, have, keep)
    if (keep > have) tokens = measure(root)
  }
  return tokens
}

interface StringSlot {
  holder: Container
  key: string | number
  text: string
}

function collectStrings(node: Json, out: StringSlot[]): void {
  if (node === null || typeof node !== 'object') return
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const v = node[i]!
      if (typeof v === 'string') out.push({ holder: node, key: i, text: v })
      else collectStrings(v, out)
    }
    return
  }
  for (const key of Object.keys(node)) {
    const v = node[key]!
    if (typeof v === 'string') out.push({ holder: node, key, text: v })
    else collectStrings(v, out)
  }
}

function shorten(text: string, length: number): string {
  let end = length
  const last = text.charCodeAt(end - 1)
  if (last >= 0xd800 && last <= 0xdbff) end-- // do not split a surrogate pair
  return text.slice(0, end) + STRING_MARKER
}

/** Cuts every slot longer than `length` plus the marker; returns how many. */
function applyStringCap(slots: readonly StringSlot[], length: number): number {
  let shortened = 0
  for (const s of slots) {
    const cut = s.text.length > length + STRING_MARKER.length
    if (cut) shortened++
    const holder = s.holder as Record<string | number, Json>
    holder[s.key] = cut ? shorten(s.text, length) : s.text
  }
  return shortened
}

/**
 * Cuts every string longer than some length L to L characters plus the
 * marker, with the largest L that fits. Returns the number of strings cut,
 * or -1 (strings restored) when even the minimum length does not fit and
 * `force` is false.
 */
function cutStrings(root: Json, max: number, force: boolean): number {
  const all: StringSlot[] = []
  collectStrings(root, all)
  const slots = all.filter((s) => s.text.length > MIN_STRING_CHARS + STRING_MARKER.length)
  if (slots.length === 0) return force ? 0 : -1
  let longest = 0
  for (const s of slots) if (s.text.length > longest) longest = s.text.length

  let lo = MIN_STRING_CHARS
  let hi = longest - STRING_MARKER.length - 1
  let fits = -1
  // A first probe at 8 characters a token keeps the search away from
  // re-serializing megabyte strings when the cap is small.
  const guess = max * 8
  if (guess >= lo && guess < hi) {
    applyStringCap(slots, guess)
    if (measure(root) <= max) {
      fits = guess
      lo = guess + 1
    } else {
      hi = guess - 1
    }
  }
  fits = largestFitting(lo, hi, fits, (cap) => {
    applyStringCap(slots, cap)
    return measure(root) <= max
  })
  if (fits < 0 && !force) {
    applyStringCap(slots, Number.POSITIVE_INFINITY) // restore
    return -1
  }
  return applyStringCap(slots, fits >= 0 ? fits : MIN_STRING_CHARS)
}

/**
 * Returns `value` itself when its JSON is within `maxTokens` estimated
 * tokens; otherwise a shrunk deep copy of the same shape (see the module
 * header). `value` is never modified.
 */
export function capStructured<T extends Record<string, unknown>>(value: T, maxTokens: number): CapResult<T> {
  const json = JSON.stringify(value)
  const originalTokens = estimateTokens(json)
  if (originalTokens <= maxTokens) {
    return { value, truncated: false, originalTokens, returnedTokens: originalTokens, droppedItems: 0, shortenedStrings: 0 }
  }
  // A plain JSON copy: what the client would see, and ours to cut.
  const root = JSON.parse(json) as Json
  const originals: Originals = new Map()
  let shortened = 0

  let tokens = cutArrays(root, maxTokens, 1, originals, originalTokens)
  if (tokens > maxTokens) {
    const n = cutStrings(root, maxTokens, false)
    if (n >= 0) shortened = n
    else {
      cutArrays(root, maxTokens, 0, originals, measure(root))
      shortened = cutStrings(root, maxTokens, true)
    }
    tokens = measure(root)
  }
  if (tokens < maxTokens && originals.size > 0) tokens = regrow(root, maxTokens, originals, tokens)

  // count the cut arrays still in the result (items inside dropped items are not counted again)
  const present: { arr: Json[]; size: number }[] = []
  sizeOf(root, present)
  let droppedItems = 0
  let totalItems = 0
  for (const { arr } of present) {
    const items = originals.get(arr)
    if (items && items.length > arr.length) {
      droppedItems += items.length - arr.length
      totalItems += items.length
    }
  }
  return {
    value: root as unknown as T,
    truncated: true,
    originalTokens,
    returnedTokens: tokens,
    droppedItems,
    shortenedStrings: shortened,
    totalItems,
  }
}

function thousands(n: number): string {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',')
}

/** "about 23,400": two or three significant figures are honest for an estimate. */
function about(n: number): string {
  const step = n >= 100_000 ? 1000 : n >= 1000 ? 100 : 10
  return thousands(Math.max(step, Math.round(n / step) * step))
}

/**
 * A one-line notice for humans and models, e.g. `[output truncated: about
 * 23,400 tokens exceeded the 10,000-token cap; 180 of 500 items dropped —
 * narrow the query or use a smaller limit]`. Empty when nothing was cut.
 */
export function truncationMarker(r: CapResult<unknown>, limit: number): string {
  if (!r.truncated) return ''
  const parts: string[] = []
  if (r.droppedItems > 0) {
    const noun = r.droppedItems === 1 && !r.totalItems ? 'item' : 'items'
    parts.push(r.totalItems ? `${thousands(r.droppedItems)} of ${thousands(r.totalItems)} ${noun} dropped` : `${thousands(r.droppedItems)} ${noun} dropped`)
  }
  if (r.shortenedStrings > 0) {
    parts.push(`${thousands(r.shortenedStrings)} long ${r.shortenedStrings === 1 ? 'string' : 'strings'} shortened (marked ${STRING_MARKER})`)
  }
  if (r.returnedTokens > limit) parts.push('still over the cap at its smallest shape')
  const what = parts.length > 0 ? `; ${parts.join(', ')}` : ''
  return `[output truncated: about ${about(r.originalTokens)} tokens exceeded the ${thousands(limit)}-token cap${what} — narrow the query or use a smaller limit]`
}
