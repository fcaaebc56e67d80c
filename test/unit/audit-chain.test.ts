import { describe, expect, it } from 'vitest'
import {
  AUDIT_COLUMNS, CANONICAL_COLUMNS, GENESIS, OPTIONAL_CANONICAL_COLUMNS, GENESIS_HASH, canonicalRow, normalizeRecord, rowHash, sealRow,
  toAuditRow, verifyChain, verifyFromRows, type AuditRecord, type AuditRow,
} from '../../src/audit/chain.ts'
import { sha256Hex } from '../../src/digest.ts'

function record(i: number, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    request_id: `req-${i}`,
    sub: 'alice',
    token_id: 'jti-1',
    method: 'tools/call',
    tool: 'get_customer',
    outcome: 'ok',
    http_status: 200,
    duration_ms: 10 + i,
    input_json: JSON.stringify({ customerId: `cus_00${i}` }),
    output_bytes: 100,
    output_sha256: 'b'.repeat(64),
    ...overrides,
  }
}

async function chain(n: number, start = GENESIS): Promise<AuditRow[]> {
  const rows: AuditRow[] = []
  let head = start
  for (let i = 1; i <= n; i += 1) {
    const row = await sealRow(record(i), head)
    rows.push(row)
    head = row
  }
  return rows
}

async function* asAsync<T>(items: T[]): AsyncIterable<T> {
  for (const item of items) yield item
}

describe('sha256Hex', () => {
  it('matches the SHA-256 test vectors for text and bytes', async () => {
    expect(await sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(await sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    expect(await sha256Hex(new TextEncoder().encode('abc'))).toBe(await sha256Hex('abc'))
  })
})

describe('canonicalRow and rowHash', () => {
  it('the canonical row lists every column but hash, in schema order, absent values as null', async () => {
    const row = await sealRow(record(1, { client_name: undefined }), GENESIS)
    const parsed = JSON.parse(canonicalRow(row)) as Record<string, unknown>
    expect(Object.keys(parsed)).toEqual([...CANONICAL_COLUMNS])
    expect(AUDIT_COLUMNS).toEqual([...CANONICAL_COLUMNS, 'hash', ...OPTIONAL_CANONICAL_COLUMNS])
    expect(parsed.client_name).toBeNull()
    expect(parsed.error_code).toBeNull()
    expect(canonicalRow(row)).toContain('"seq":1,"ts":"2026-01-01T00:00:01.000Z"')
  })

  it('the canonical row does not depend on property order or on undefined vs null', async () => {
    const row = await sealRow(record(1), GENESIS)
    const reversed = Object.fromEntries(Object.entries(row).reverse()) as unknown as AuditRow
    expect(canonicalRow(reversed)).toBe(canonicalRow(row))
    expect(canonicalRow({ ...row, error_code: undefined })).toBe(canonicalRow({ ...row, error_code: null }))
  })

  it('the hash is SHA-256 of prev_hash, a newline, and the canonical row', async () => {
    const row = await sealRow(record(1), GENESIS)
    expect(row.hash).toBe(await sha256Hex(`${GENESIS_HASH}\n${canonicalRow(row)}`))
    expect(row.hash).toBe(await rowHash(row.prev_hash, row))
    expect(row.hash).toMatch(/^[0-9a-f]{64}$/)
  })

  it('every column is covered by the hash', async () => {
    const row = await sealRow(record(1, { client_name: 'c', client_version: '1', error_code: 'e', output_excerpt: 'x' }), GENESIS)
    for (const column of CANONICAL_COLUMNS) {
      const value = row[column]
      const changed = typeof value === 'number' ? value + 1 : value === null || value === undefined ? 'x' : `${value}!`
      expect(await rowHash(row.prev_hash, { ...row, [column]: changed }), column).not.toBe(row.hash)
    }
    expect(await rowHash('1'.repeat(64), row)).not.toBe(row.hash)
  })

  it('a row without the later columns hashes as before they existed, so old rows still verify', async () => {
    const row = await sealRow(record(1), GENESIS)
    const before: Record<string, unknown> = {}
    for (const column of CANONICAL_COLUMNS) before[column] = row[column] ?? null
    expect(canonicalRow(row)).toBe(JSON.stringify(before))
    expect(row.hash).toBe(await sha256Hex(`${GENESIS_HASH}\n${JSON.stringify(before)}`))
    const stored = toAuditRow({ ...row, input_bytes: undefined, count: undefined }) // as a D1 read of an old row
    expect(await verifyChain([stored], GENESIS)).toMatchObject({ ok: true, count: 1 })
  })

  it('the later columns, when set, follow prev_hash in their order and are covered by the hash', async () => {
    const row = await sealRow(record(1, {
      outcome: 'denied', input_bytes: 4100, input_sha256: 'd'.repeat(64), count: 7, first_request_id: 'r1', last_request_id: 'r7',
    }), GENESIS)
    const keys = Object.keys(JSON.parse(canonicalRow(row)) as object)
    expect(keys).toEqual([...CANONICAL_COLUMNS, ...OPTIONAL_CANONICAL_COLUMNS])
    for (const column of OPTIONAL_CANONICAL_COLUMNS) {
      const value = row[column]
      const changed = typeof value === 'number' ? value + 1 : `${String(value)}!`
      expect(await rowHash(row.prev_hash, { ...row, [column]: changed }), column).not.toBe(row.hash)
      expect(await rowHash(row.prev_hash, { ...row, [column]: null }), `${column} erased`).not.toBe(row.hash)
    }
    expect(() => normalizeRecord(record(1, { count: 0 }))).toThrow(/count/)
    expect(() => normalizeRecord(record(1, { input_bytes: 1.5 }))).toThrow(/input_bytes/)
  })

  it('a string cannot be confused with a number or null in the canonical row', async () => {
    const row = await sealRow(record(1), GENESIS)
    expect(canonicalRow({ ...row, error_code: 'null' })).not.toBe(canonicalRow({ ...row, error_code: null }))
    expect(canonicalRow({ ...row, http_status: '200' as unknown as number })).not.toBe(canonicalRow(row))
  })
})

describe('sealRow', () => {
  it('places the record after the head', async () => {
    const head = { seq: 41, hash: 'c'.repeat(64) }
    const row = await sealRow(record(1), head)
    expect(row.seq).toBe(42)
    expect(row.prev_hash).toBe(head.hash)
  })

  it('normalises values to what D1 stores: integers, nulls, well-formed strings', async () => {
    const row = await sealRow(record(1, { duration_ms: 12.6, tool: undefined, client_name: 'a\uDC00b' }), GENESIS)
    expect(row.duration_ms).toBe(13)
    expect(row.tool).toBeNull()
    expect(row.client_name).toBe('a\uFFFDb')
    expect((await sealRow(record(1, { duration_ms: -3 }), GENESIS)).duration_ms).toBe(0)
  })

  it('refuses records that cannot be stored faithfully, naming the column', () => {
    expect(() => normalizeRecord(record(1, { outcome: 'great' as 'ok' }))).toThrow(/outcome/)
    expect(() => normalizeRecord(record(1, { ts: '2026-01-01 00:00:00' }))).toThrow(/ts/)
    expect(() => normalizeRecord(record(1, { http_status: 200.5 }))).toThrow(/http_status/)
    expect(() => normalizeRecord(record(1, { output_bytes: -1 }))).toThrow(/output_bytes/)
    expect(() => normalizeRecord(record(1, { duration_ms: Number.NaN }))).toThrow(/duration_ms/)
    expect(() => normalizeRecord(record(1, { sub: 42 as unknown as string }))).toThrow(/sub/)
    expect(() => normalizeRecord(record(1, { tool: 7 as unknown as string }))).toThrow(/tool/)
  })

  it('refuses a malformed head', async () => {
    await expect(sealRow(record(1), { seq: 1.5, hash: GENESIS_HASH })).rejects.toThrow(/head.seq/)
    await expect(sealRow(record(1), { seq: 1, hash: 'XYZ' })).rejects.toThrow(/head.hash/)
  })
})

describe('verifyChain', () => {
  it('an intact chain verifies, from arrays and async iterables alike', async () => {
    const rows = await chain(10)
    const expected = { ok: true, count: 10, last: { seq: 10, hash: rows[9]?.hash } }
    expect(await verifyChain(rows, GENESIS)).toEqual(expected)
    expect(await verifyChain(asAsync(rows), GENESIS)).toEqual(expected)
  })

  it('an empty chain verifies and its head is the start', async () => {
    expect(await verifyChain([], GENESIS)).toEqual({ ok: true, count: 0, last: GENESIS })
  })

  it('an edited row is named by its seq', async () => {
    const rows = await chain(10)
    rows[3] = { ...rows[3]!, outcome: 'denied' }
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: false, seq: 4, reason: 'hash_mismatch' })
  })

  it('an edited row whose hash was recomputed is caught at the next row', async () => {
    const rows = await chain(10)
    const edited = { ...rows[3]!, sub: 'mallory' }
    rows[3] = { ...edited, hash: await rowHash(edited.prev_hash, edited) }
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: false, seq: 5, reason: 'prev_hash_mismatch' })
  })

  it('a deleted row is named by its seq (gap)', async () => {
    const rows = await chain(10)
    rows.splice(6, 1)
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: false, seq: 7, reason: 'gap', detail: expect.stringContaining('seq 7 missing') })
  })

  it('several deleted rows are reported as one range starting at the first', async () => {
    const rows = await chain(10)
    rows.splice(2, 3)
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: false, seq: 3, reason: 'gap', detail: expect.stringContaining('3..5') })
  })

  it('a swapped pair of rows is named at the first of them', async () => {
    const rows = await chain(10)
    // Swap rows 5 and 6 in the log, each keeping its own seq column value…
    const five = rows[4]!
    const six = rows[5]!
    const swapped = [...rows]
    swapped[4] = { ...six, seq: 5 }
    swapped[5] = { ...five, seq: 6 }
    expect(await verifyChain(swapped, GENESIS)).toMatchObject({ ok: false, seq: 5, reason: 'prev_hash_mismatch' })
    // …or delivered out of order.
    const reordered = [...rows]
    reordered[4] = six
    reordered[5] = five
    expect(await verifyChain(reordered, GENESIS)).toMatchObject({ ok: false, seq: 5, reason: 'gap' })
  })

  it('a duplicated or backwards row is an order failure', async () => {
    const rows = await chain(5)
    expect(await verifyChain([...rows.slice(0, 3), rows[2]!, ...rows.slice(3)], GENESIS))
      .toMatchObject({ ok: false, seq: 3, reason: 'order' })
    expect(await verifyChain([rows[0]!, rows[1]!, rows[0]!], GENESIS)).toMatchObject({ ok: false, seq: 1, reason: 'order' })
  })

  it('a forged prev_hash is detected, with or without a recomputed hash', async () => {
    const rows = await chain(6)
    const forged = { ...rows[2]!, prev_hash: 'f'.repeat(64) }
    expect(await verifyChain([...rows.slice(0, 2), forged, ...rows.slice(3)], GENESIS))
      .toMatchObject({ ok: false, seq: 3, reason: 'prev_hash_mismatch' })
    const resealed = await sealRow(rows[2]!, { seq: 2, hash: 'f'.repeat(64) })
    expect(await verifyChain([...rows.slice(0, 2), resealed, ...rows.slice(3)], GENESIS))
      .toMatchObject({ ok: false, seq: 3, reason: 'prev_hash_mismatch' })
  })

  it('a chain verifies from a checkpoint, and only from the right one', async () => {
    const rows = await chain(10)
    const checkpoint = { seq: 4, hash: rows[3]!.hash }
    expect(await verifyChain(rows.slice(4), checkpoint)).toEqual({ ok: true, count: 6, last: { seq: 10, hash: rows[9]!.hash } })
    expect(await verifyChain(rows.slice(4), { seq: 4, hash: rows[2]!.hash })).toMatchObject({ ok: false, seq: 5, reason: 'prev_hash_mismatch' })
    expect(await verifyChain(rows.slice(5), checkpoint)).toMatchObject({ ok: false, seq: 5, reason: 'gap' })
    expect(await verifyChain(rows, checkpoint)).toMatchObject({ ok: false, seq: 1, reason: 'order' })
  })

  it('a row with a non-integer seq is an order failure at the expected seq', async () => {
    const rows = await chain(3)
    expect(await verifyChain([rows[0]!, { ...rows[1]!, seq: Number.NaN }], GENESIS)).toMatchObject({ ok: false, seq: 2, reason: 'order' })
  })
})

describe('toAuditRow', () => {
  it('reads a stored row unchanged', async () => {
    const row = await sealRow(record(1, { client_name: 'x' }), GENESIS)
    expect(toAuditRow({ ...row })).toEqual({ ...row })
  })

  it('a value of the wrong type becomes a marker that fails verification instead of crashing it', async () => {
    const rows = await chain(3)
    const raw: Record<string, unknown> = { ...rows[1]!, input_json: new Uint8Array([1, 2]), http_status: '200' }
    const parsed = toAuditRow(raw)
    expect(parsed.input_json).toBe('<invalid:object>')
    expect(parsed.http_status).toBe('<invalid:string>')
    expect(await verifyChain([rows[0]!, parsed, rows[2]!], GENESIS)).toMatchObject({ ok: false, seq: 2, reason: 'hash_mismatch' })
    expect(toAuditRow({ ...rows[0]!, seq: '1' }).seq).toBeNaN()
  })
})

describe('verifyFromRows (the audit:verify report)', () => {
  it('reports OK with the row count and range', async () => {
    const rows = await chain(5)
    expect(await verifyFromRows(rows, null)).toMatchObject({ ok: true, message: 'audit chain OK: 5 rows (seq 1..5)' })
  })

  it('verifies from the checkpoint when there is one', async () => {
    const rows = await chain(5)
    const checkpoint = { last_seq: 2, last_hash: rows[1]!.hash }
    expect(await verifyFromRows(rows.slice(2), checkpoint)).toMatchObject({ ok: true, message: 'audit chain OK: 3 rows (seq 3..5)' })
    expect(await verifyFromRows([], { last_seq: 5, last_hash: rows[4]!.hash }))
      .toMatchObject({ ok: true, message: 'audit chain OK: 0 rows (checkpoint at seq 5)' })
  })

  it('an empty log is OK', async () => {
    expect(await verifyFromRows([], null)).toMatchObject({ ok: true, message: 'audit chain OK: 0 rows' })
  })

  it('reports BROKEN with the first bad seq and reason', async () => {
    const rows = await chain(5)
    const tampered = rows.map((r) => (r.seq === 3 ? { ...r, sub: 'mallory' } : r))
    const report = await verifyFromRows(tampered, null)
    expect(report.ok).toBe(false)
    expect(report.message).toMatch(/^audit chain BROKEN at seq 3: hash_mismatch \(.+\)$/)
  })

  it('a malformed checkpoint is reported as broken, not trusted', async () => {
    const rows = await chain(5)
    const report = await verifyFromRows(rows.slice(2), { last_seq: 'x', last_hash: 5 })
    expect(report.ok).toBe(false)
    expect(report.message).toMatch(/^audit chain BROKEN at seq 3: prev_hash_mismatch \(audit_checkpoint is malformed/)
  })
})
