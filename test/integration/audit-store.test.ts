// The audit log against a real D1 (workerd + miniflare): the AuditSequencer
// Durable Object (concurrency, arrival order, atomicity of a mutation with its
// audit row, the durable outbox through a D1 outage, idempotent drains),
// pruning, and tamper detection on what is actually stored. Sequencer tests
// each address a chain of their own (idFromName('chain-<n>'), n unused by any
// other test), so they start from an empty chain without clearing anything.
import { runDurableObjectAlarm } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it, onTestFinished, vi } from 'vitest'
import type { AuditSequencer } from '../../src/audit/sequencer.ts'
import { GENESIS, sealRow, verifyChain, type AuditRecord } from '../../src/audit/chain.ts'
import {
  AuditChainError, type AuditDb, appendAudit, chainHead, commitWithAudit, insertStatement, pruneAudit, readChain,
  readCheckpoint, verifyStoredChain,
} from '../../src/audit/store.ts'

const db = env.DB

function record(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    ts: new Date().toISOString(),
    request_id: crypto.randomUUID(),
    sub: 'alice',
    token_id: 'jti-1',
    client_name: 'vitest',
    client_version: '4',
    method: 'tools/call',
    tool: 'get_customer',
    outcome: 'ok',
    http_status: 200,
    duration_ms: 12,
    input_json: '{"customerId":"cus_001"}',
    output_bytes: 120,
    output_sha256: 'a'.repeat(64),
    output_excerpt: '{"id":"cus_001"}',
    error_code: null,
    ...overrides,
  }
}

async function appendMany(n: number, ts?: (i: number) => string): Promise<void> {
  for (let i = 1; i <= n; i += 1) await appendAudit(db, record(ts ? { ts: ts(i) } : {}))
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

async function count(): Promise<number> {
  return (await db.prepare('SELECT count(*) AS n FROM audit_log').first<number>('n')) ?? -1
}

async function orderNote(id: string): Promise<string | null> {
  return db.prepare('SELECT note FROM orders WHERE id = ?1').bind(id).first<string | null>('note')
}

async function orderStatus(id: string): Promise<string | null> {
  return db.prepare('SELECT status FROM orders WHERE id = ?1').bind(id).first<string>('status')
}

/** A chain no other test uses, and its sequencer (fresh: it loads the head from D1, i.e. the genesis). */
function freshChain(): { chain: number; seq: DurableObjectStub<AuditSequencer> } {
  const chain = 1000 + Math.floor(Math.random() * 100_000_000)
  return { chain, seq: env.AUDIT_SEQUENCER.get(env.AUDIT_SEQUENCER.idFromName(`chain-${chain}`)) }
}

async function chainCount(chain: number): Promise<number> {
  return (await db.prepare('SELECT count(*) AS n FROM audit_log WHERE chain = ?1').bind(chain).first<number>('n')) ?? -1
}

/** Waits (bounded) until D1 holds `n` rows of `chain`: the sequencer drains its outbox after append returns. */
async function rowsLanded(chain: number, n: number): Promise<void> {
  await vi.waitFor(async () => expect(await chainCount(chain)).toBe(n), { timeout: 15_000, interval: 20 })
}

const ticketSql = `INSERT INTO tickets (id, customer_id, subject, body, created_by, created_at) VALUES (?1, 'cus_001', ?2, 'body', 'alice', ?3)`

async function ticketsWithIds(ids: string[]): Promise<number> {
  if (ids.length === 0) return 0
  const placeholders = ids.map((_, i) => `?${i + 1}`).join(', ')
  return (await db.prepare(`SELECT count(*) AS n FROM tickets WHERE id IN (${placeholders})`).bind(...ids).first<number>('n')) ?? -1
}

function captureLines(): { events: (name: string) => Record<string, unknown>[]; restore: () => void } {
  const lines: string[] = []
  const spies = (['log', 'warn', 'error'] as const).map((stream) =>
    vi.spyOn(console, stream).mockImplementation((...args: unknown[]) => { lines.push(args.map(String).join(' ')) }))
  return {
    events: (name) => lines.flatMap((l) => {
      try {
        const parsed = JSON.parse(l) as Record<string, unknown>
        return parsed['event'] === name ? [parsed] : []
      } catch {
        return []
      }
    }),
    restore: () => spies.forEach((s) => s.mockRestore()),
  }
}

const range = (n: number, from = 1) => Array.from({ length: n }, (_, i) => i + from)

describe('AuditSequencer', { timeout: 30_000 }, () => {
  it('concurrent appends never fork the chain: 50 parallel appends give seq 1..50 in D1 and a valid chain', async () => {
    const { chain, seq } = freshChain()
    const heads = await Promise.all(range(50, 0).map((i) => seq.append(record({ request_id: `req-${i}` }))))
    expect(new Set(heads.map((h) => h.seq)).size).toBe(50)
    await rowsLanded(chain, 50)
    const stored = await all(readChain(db, { chain, pageSize: 7 }))
    expect(stored.map((r) => r.seq)).toEqual(range(50))
    expect(new Set(stored.map((r) => r.request_id)).size).toBe(50)
    // What each append returned is what D1 holds at that seq.
    for (const h of heads) expect(stored[h.seq - 1]?.hash).toBe(h.hash)
    expect(await verifyChain(stored, GENESIS)).toEqual({ ok: true, count: 50, last: { seq: 50, hash: stored[49]?.hash } })
  })

  it('appends and mutations interleaved: gap-free verifying chain, and mutations take effect in seq order', async () => {
    const { chain, seq } = freshChain()
    const ticket = `tkt_order_${crypto.randomUUID().slice(0, 8)}`
    expect(await seq.commit([{ sql: ticketSql, params: [ticket, 'order', new Date().toISOString()] }], record({ request_id: 'create' }), { requireChange: true }))
      .toMatchObject({ applied: true, seq: 1 })
    // 20 mutations, each appending its number to one ticket's body, sent at once with 20 appends.
    const results = await Promise.all(range(20).flatMap((i) => [
      seq.commit([{ sql: "UPDATE tickets SET body = body || ',' || ?2 WHERE id = ?1", params: [ticket, String(i)] }],
        record({ tool: 'update_ticket', request_id: `mut-${i}` }), { requireChange: true }),
      seq.append(record({ request_id: `read-${i}` })),
    ]))
    expect(results.filter((r) => 'applied' in r && r.applied)).toHaveLength(20)
    await rowsLanded(chain, 41)
    const rows = await all(readChain(db, { chain }))
    expect(rows.map((r) => r.seq)).toEqual(range(41))
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: true, count: 41 })
    // The order D1 applied the mutations in (the body) is the order of their rows' seq.
    const body = await db.prepare('SELECT body FROM tickets WHERE id = ?1').bind(ticket).first<string>('body')
    const applied = body!.split(',').slice(1)
    expect(applied).toHaveLength(20)
    expect(rows.filter((r) => r.request_id.startsWith('mut-')).map((r) => r.request_id.slice(4))).toEqual(applied)
    await db.prepare('DELETE FROM tickets WHERE id = ?1').bind(ticket).run()
  })

  it('a failing mutation batch leaves neither change nor row and does not consume the seq', async () => {
    const { chain, seq } = freshChain()
    await seq.append(record())
    await rowsLanded(chain, 1)
    const id = `tkt_fail_${crypto.randomUUID().slice(0, 8)}`
    // The second statement violates NOT NULL: the whole batch is rolled back.
    expect(await seq.commit([
      { sql: ticketSql, params: [id, 's', new Date().toISOString()] },
      { sql: ticketSql, params: [`${id}_x`, null, new Date().toISOString()] },
    ], record({ tool: 'create_ticket' }))).toEqual({ applied: false, reason: 'batch_failed' })
    const noChange = await seq.commit([{ sql: `UPDATE tickets SET subject = 'x' WHERE id = ?1`, params: ['tkt_does_not_exist'] }], record(), { requireChange: true })
    expect(noChange).toEqual({ applied: false, reason: 'no_change' })
    expect(await ticketsWithIds([id, `${id}_x`])).toBe(0)
    expect(await chainCount(chain)).toBe(1)
    const next = await seq.append(record())
    expect(next.seq).toBe(2)
    await rowsLanded(chain, 2)
    expect(await verifyStoredChain(db, { chain })).toMatchObject({ ok: true, count: 2 })
  })

  // D1 is made to refuse this chain's audit INSERTs by a trigger (a real D1
  // error in the sequencer's own flush; nothing of the object is mocked).
  it('accepted means durable: through a D1 outage rows stay in the outbox, mutations wait, and the alarm drains them in order, once each', async () => {
    const { chain, seq } = freshChain()
    const trigger = `audit_down_${chain}`
    await db.prepare(`CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_log WHEN NEW.chain = ${chain} BEGIN SELECT RAISE(ABORT, 'D1 unavailable (simulated)'); END`).run()
    onTestFinished(async () => { await db.prepare(`DROP TRIGGER IF EXISTS ${trigger}`).run() })
    const accepted = await Promise.all(range(30, 0).map((i) => seq.append(record({ request_id: `out-${i}` }))))
    expect(accepted.map((a) => a.seq).sort((a, b) => a - b)).toEqual(range(30))
    expect(await seq.drain()).toBe(30)
    expect(await chainCount(chain)).toBe(0)
    // A mutation cannot jump the queue: its row would have to follow the 30 held back.
    const id = `tkt_wait_${crypto.randomUUID().slice(0, 8)}`
    expect(await seq.commit([{ sql: ticketSql, params: [id, 'waits', new Date().toISOString()] }], record(), { requireChange: true }))
      .toEqual({ applied: false, reason: 'unavailable' })
    expect(await ticketsWithIds([id])).toBe(0)
    // Nor can the head be reloaded from D1 while accepted rows are not there.
    expect(await seq.resync()).toEqual({ ok: false, pending: 30 })

    await db.prepare(`DROP TRIGGER ${trigger}`).run()
    // The failed flush set an alarm: run it now rather than wait for its time
    // (false if it already fired on its own; then it already drained).
    await runDurableObjectAlarm(seq)
    await rowsLanded(chain, 30)
    const rows = await all(readChain(db, { chain }))
    expect(rows.map((r) => r.seq)).toEqual(range(30))
    for (const a of accepted) expect(rows[a.seq - 1]?.hash).toBe(a.hash)
    expect(await verifyStoredChain(db, { chain })).toMatchObject({ ok: true, count: 30 })
    expect(await seq.drain()).toBe(0)
    expect((await seq.append(record())).seq).toBe(31)
    await rowsLanded(chain, 31)
  })

  it('rows accepted while a flush is in flight are neither lost nor sent twice: 392 appends from many callers at once, with drains among them', async () => {
    const { chain, seq } = freshChain()
    // Sent at once: the first flush starts with the first rows, the rest arrive
    // while it gathers or is in flight; the drains ask for a flush mid-stream.
    const calls = range(400, 0).map((i) => (i % 50 === 25 ? seq.drain().then(() => null) : seq.append(record({ request_id: `fl-${i}` }))))
    const heads = (await Promise.all(calls)).filter((h) => h !== null)
    expect(heads).toHaveLength(392)
    expect(await seq.drain()).toBe(0)
    const rows = await all(readChain(db, { chain }))
    expect(rows.map((r) => r.seq)).toEqual(range(392))
    expect(new Set(rows.map((r) => r.request_id)).size).toBe(392)
    for (const h of heads) expect(rows[h.seq - 1]?.hash).toBe(h.hash)
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: true, count: 392 })
  })

  it('rows land in D1 without a drain() call: a lone append is flushed after the short gathering wait', async () => {
    const { chain, seq } = freshChain()
    const head = await seq.append(record({ request_id: 'lone' }))
    await rowsLanded(chain, 1)
    expect((await all(readChain(db, { chain })))[0]).toMatchObject({ seq: 1, request_id: 'lone', hash: head.hash })
  })

  it('more rows held back than the object keeps in memory (a long D1 outage): all are drained from the outbox, in order, once each', async () => {
    const { chain, seq } = freshChain()
    const trigger = `audit_long_down_${chain}`
    await db.prepare(`CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_log WHEN NEW.chain = ${chain} BEGIN SELECT RAISE(ABORT, 'D1 unavailable (simulated)'); END`).run()
    onTestFinished(async () => { await db.prepare(`DROP TRIGGER IF EXISTS ${trigger}`).run() })
    const accepted: { seq: number; hash: string }[] = []
    // 1 050 rows (more than MEMORY_MAX_ROWS = 1 000), 50 callers at a time.
    for (let wave = 0; wave < 21; wave += 1) {
      accepted.push(...await Promise.all(range(50, wave * 50).map((i) => seq.append(record({ request_id: `long-${i}` })))))
    }
    expect(await seq.drain()).toBe(1050)
    expect(await chainCount(chain)).toBe(0)
    await db.prepare(`DROP TRIGGER ${trigger}`).run()
    expect(await seq.drain()).toBe(0)
    const rows = await all(readChain(db, { chain }))
    expect(rows.map((r) => r.seq)).toEqual(range(1050))
    for (const a of accepted) expect(rows[a.seq - 1]?.hash).toBe(a.hash)
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: true, count: 1050 })
    // Back to normal: the next row follows, and lands.
    expect((await seq.append(record())).seq).toBe(1051)
    await rowsLanded(chain, 1051)
    expect(await verifyStoredChain(db, { chain })).toMatchObject({ ok: true, count: 1051 })
  })

  it('a drain retried after D1 already took part of it stores each row once; a different row at a taken seq is reported loudly', async () => {
    const { chain, seq } = freshChain()
    // D1 refuses this chain's rows unless a test-only flag is open; the test
    // opens it only inside its own batch (one transaction), so the sequencer's
    // flushes keep failing until the trigger is dropped.
    const flag = `audit_open_${chain}`
    const trigger = `audit_partial_${chain}`
    await db.batch([
      db.prepare(`CREATE TABLE ${flag} (open INTEGER NOT NULL)`),
      db.prepare(`INSERT INTO ${flag} VALUES (0)`),
      db.prepare(`CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_log WHEN NEW.chain = ${chain} AND (SELECT open FROM ${flag}) = 0 BEGIN SELECT RAISE(ABORT, 'D1 unavailable (simulated)'); END`),
    ])
    onTestFinished(async () => {
      await db.batch([db.prepare(`DROP TRIGGER IF EXISTS ${trigger}`), db.prepare(`DROP TABLE IF EXISTS ${flag}`)])
    })
    const records = range(6).map((i) => record({ request_id: `part-${i}` }))
    for (const r of records) await seq.append(r) // one by one: seq i is records[i-1]
    expect(await seq.drain()).toBe(6)
    // As if an earlier flush had reached D1 with rows 1 and 2 before the object
    // lost its outbox DELETE; row 3 at that seq is somebody else's.
    let head = { ...GENESIS }
    const direct: D1PreparedStatement[] = [db.prepare(`UPDATE ${flag} SET open = 1`)]
    for (const r of records.slice(0, 2)) {
      const row = await sealRow(r, head)
      direct.push(insertStatement(db, row, chain))
      head = { seq: row.seq, hash: row.hash }
    }
    const intruder = await sealRow(record({ request_id: 'intruder' }), head)
    direct.push(insertStatement(db, intruder, chain), db.prepare(`UPDATE ${flag} SET open = 0`))
    await db.batch(direct)
    expect(await chainCount(chain)).toBe(3)
    expect(await seq.drain()).toBe(6)
    await db.prepare(`DROP TRIGGER ${trigger}`).run()
    const logs = captureLines()
    try {
      expect(await seq.drain()).toBe(0)
    } finally {
      logs.restore()
    }
    const rows = await all(readChain(db, { chain }))
    expect(rows.map((r) => [r.seq, r.request_id])).toEqual([[1, 'part-1'], [2, 'part-2'], [3, 'intruder'], [4, 'part-4'], [5, 'part-5'], [6, 'part-6']])
    expect(logs.events('audit_seq_taken')).toMatchObject([{ seq: 3, stored_hash: intruder.hash }])
    expect(await verifyStoredChain(db, { chain })).toMatchObject({ ok: false, seq: 4, reason: 'prev_hash_mismatch' })
  })

  it('property: any interleaving of appends and mutations (applied, unchanged, failing) gives a gap-free verifying chain whose counts match', async () => {
    type Op = { kind: 'append' | 'commit' | 'unchanged' | 'failing'; wave: number }
    const op = fc.record({ kind: fc.constantFrom<Op['kind']>('append', 'commit', 'unchanged', 'failing'), wave: fc.nat(3) })
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 20 }), async (ops) => {
      const { chain, seq } = freshChain()
      const ids = ops.map(() => `tkt_p_${crypto.randomUUID().slice(0, 12)}`)
      const run = (o: Op, i: number) => {
        const id = ids[i]!
        const rec = record({ request_id: `${o.kind}-${i}` })
        const at = new Date().toISOString()
        switch (o.kind) {
          case 'append': return seq.append(rec)
          case 'commit': return seq.commit([{ sql: ticketSql, params: [id, 'p', at] }], rec, { requireChange: true })
          case 'unchanged': return seq.commit([{ sql: "UPDATE tickets SET subject = 'x' WHERE id = ?1", params: [id] }], rec, { requireChange: true })
          case 'failing': return seq.commit([{ sql: ticketSql, params: [id, 'p', at] }, { sql: ticketSql, params: [`${id}_x`, null, at] }], rec)
        }
      }
      // Operations of one wave are sent at once; the waves follow each other.
      for (let wave = 0; wave <= 3; wave += 1) {
        await Promise.all(ops.flatMap((o, i) => (o.wave === wave ? [run(o, i)] : [])))
      }
      expect(await seq.drain()).toBe(0)
      const rows = await all(readChain(db, { chain }))
      const kept = ops.flatMap((o, i) => (o.kind === 'append' || o.kind === 'commit' ? [`${o.kind}-${i}`] : []))
      expect(rows.map((r) => r.seq)).toEqual(range(kept.length))
      expect(rows.map((r) => r.request_id).sort()).toEqual(kept.sort())
      expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: true, count: kept.length })
      const committed = ids.filter((_, i) => ops[i]!.kind === 'commit')
      expect(await ticketsWithIds(committed)).toBe(committed.length)
      const refused = ids.flatMap((id, i) => (ops[i]!.kind === 'failing' ? [id, `${id}_x`] : []))
      expect(await ticketsWithIds(refused)).toBe(0)
    }), { numRuns: 8 })
  })
})

/** The same database with `ms` of latency each way per query (reads and single-statement writes only). */
function withLatency(inner: D1Database, ms: number): AuditDb {
  const delay = () => new Promise((resolve) => setTimeout(resolve, ms))
  const wrap = (statement: D1PreparedStatement): D1PreparedStatement => new Proxy(statement, {
    get(target, property) {
      if (property === 'bind') return (...values: unknown[]) => wrap(target.bind(...values))
      if (property === 'run' || property === 'first' || property === 'all') {
        return async (...args: unknown[]) => {
          await delay()
          const method = Reflect.get(target, property) as (...a: unknown[]) => Promise<unknown>
          const result = await method.apply(target, args)
          await delay()
          return result
        }
      }
      return Reflect.get(target, property) as unknown
    },
  })
  return { prepare: (sql: string) => wrap(inner.prepare(sql)), batch: (statements) => inner.batch(statements) }
}

// Other test files may share this database: start every test from an empty log.
beforeEach(async () => {
  await db.batch([db.prepare('DELETE FROM audit_log'), db.prepare('DELETE FROM audit_checkpoint')])
})

// The trigger some tests use to make audit writes fail must never outlive them.
afterEach(async () => {
  await db.prepare('DROP TRIGGER IF EXISTS audit_log_unwritable').run()
})

describe('appendAudit', () => {
  it('a row read back from D1 hashes to what was written (unicode, quotes, long text, nulls)', async () => {
    await appendAudit(db, record({
      client_name: 'Zoë’s client 🚀 "quoted" \\ back\nslash',
      tool: null,
      input_json: JSON.stringify({ body: 'é'.repeat(3000), nested: { a: [1, 2, 3] } }),
      output_bytes: null, output_sha256: null, output_excerpt: null,
      error_code: 'internal',
      outcome: 'error',
      http_status: 500,
      duration_ms: 3.7,
    }))
    await appendAudit(db, record({ client_name: 'lone \uD800 surrogate', client_version: undefined }))
    await appendAudit(db, record({ client_name: 'nul \u0000 inside' }))
    const result = await verifyStoredChain(db)
    expect(result).toMatchObject({ ok: true, count: 3 })
    const [first, second] = await all(readChain(db))
    expect(first?.duration_ms).toBe(4)
    expect(second?.client_name).toBe('lone \uFFFD surrogate')
    expect(second?.client_version).toBeNull()
  })

  it('the chain head is the newest row, else the checkpoint, else the genesis', async () => {
    expect(await chainHead(db)).toEqual(GENESIS)
    await appendMany(3)
    const third = (await all(readChain(db)))[2]
    expect(await chainHead(db)).toEqual({ seq: 3, hash: third?.hash })
    await pruneAudit(db, new Date(Date.now() + 60_000))
    expect(await count()).toBe(0)
    expect(await chainHead(db)).toEqual({ seq: 3, hash: third?.hash })
    const next = await appendAudit(db, record())
    expect(next.seq).toBe(4)
    expect(next.prev_hash).toBe(third?.hash)
  })

  it('a D1 failure is thrown, not retried', async () => {
    await db.prepare(`CREATE TRIGGER audit_log_unwritable BEFORE INSERT ON audit_log
      BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END`).run()
    await expect(appendAudit(db, record())).rejects.toThrow(/audit store unavailable/)
  })
})

describe('commitWithAudit', () => {
  it('a mutation and its audit row commit together', async () => {
    const original = await orderNote('ord_0001')
    onTestFinished(async () => {
      await db.prepare('UPDATE orders SET note = ?2 WHERE id = ?1').bind('ord_0001', original).run()
    })
    const note = `note ${crypto.randomUUID()}`
    const result = await commitWithAudit(
      db,
      [db.prepare('UPDATE orders SET note = ?2 WHERE id = ?1').bind('ord_0001', note)],
      record({ tool: 'update_order' }),
    )
    expect(result.applied).toBe(true)
    if (!result.applied) return
    // meta.changes also counts what triggers changed (orders feed search_index): > 0, not === 1.
    expect(result.results[0]?.meta.changes).toBeGreaterThan(0)
    expect(await orderNote('ord_0001')).toBe(note)
    expect(await count()).toBe(1)
    expect(result.row.seq).toBe(1)
    expect(await verifyStoredChain(db)).toMatchObject({ ok: true, count: 1 })
  })

  it('a mutation is not applied when its audit row cannot be written', async () => {
    const before = await orderNote('ord_0002')
    await db.prepare(`CREATE TRIGGER audit_log_unwritable BEFORE INSERT ON audit_log
      BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END`).run()
    await expect(commitWithAudit(
      db,
      [db.prepare('UPDATE orders SET note = ?2 WHERE id = ?1').bind('ord_0002', 'must not be stored')],
      record({ tool: 'update_order' }),
    )).rejects.toThrow(/audit store unavailable/)
    await db.prepare('DROP TRIGGER audit_log_unwritable').run()
    expect(await orderNote('ord_0002')).toBe(before)
    expect(await count()).toBe(0)
  })

  it('a mutation is not applied when its audit row violates the schema (the batch is one transaction)', async () => {
    const before = await orderNote('ord_0003')
    const row = await sealRow(record(), GENESIS)
    const bogus = { ...row, outcome: 'bogus' as 'ok' } // bypasses sealRow's check; the CHECK constraint refuses it
    await expect(db.batch([
      db.prepare('UPDATE orders SET note = ?2 WHERE id = ?1').bind('ord_0003', 'must not be stored'),
      insertStatement(db, bogus),
    ])).rejects.toThrow(/CHECK constraint failed/)
    expect(await orderNote('ord_0003')).toBe(before)
    // and through commitWithAudit, an invalid record is refused before anything runs
    await expect(commitWithAudit(
      db,
      [db.prepare('UPDATE orders SET note = ?2 WHERE id = ?1').bind('ord_0003', 'must not be stored')],
      record({ outcome: 'bogus' as 'ok' }),
    )).rejects.toThrow(TypeError)
    expect(await orderNote('ord_0003')).toBe(before)
    expect(await count()).toBe(0)
  })

  it('a failing business statement stores no audit row', async () => {
    await expect(commitWithAudit(
      db,
      [db.prepare("UPDATE orders SET status = 'lost' WHERE id = ?1").bind('ord_0004')],
      record({ tool: 'update_order' }),
    )).rejects.toThrow(/CHECK constraint failed/)
    expect(await count()).toBe(0)
  })

  it('without requireChange, an UPDATE that matched nothing still commits and reports meta.changes = 0', async () => {
    const result = await commitWithAudit(
      db,
      [db.prepare("UPDATE orders SET status = 'paid' WHERE id = ?1 AND status = ?2").bind('ord_0005', 'no-such-status')],
      record({ tool: 'update_order' }),
    )
    expect(result.applied).toBe(true)
    if (result.applied) expect(result.results[0]?.meta.changes).toBe(0)
    expect(await count()).toBe(1)
  })

  it('with requireChange, a conditional UPDATE that matched nothing is neither applied nor audited as done', async () => {
    const status = await orderStatus('ord_0006')
    const note = await orderNote('ord_0006')
    const other = status === 'pending' ? 'paid' : 'pending'
    const result = await commitWithAudit(
      db,
      [
        db.prepare('UPDATE orders SET note = ?2 WHERE id = ?1').bind('ord_0006', 'first statement, must roll back'),
        db.prepare('UPDATE orders SET status = ?3 WHERE id = ?1 AND status = ?2').bind('ord_0006', 'no-such-status', other),
      ],
      record({ tool: 'update_order' }),
      { requireChange: true },
    )
    expect(result).toEqual({ applied: false, reason: 'no_change' })
    expect(await orderStatus('ord_0006')).toBe(status)
    expect(await orderNote('ord_0006')).toBe(note)
    expect(await count()).toBe(0)

    // The same guard lets a matching update through (orders have triggers; changes() ignores them).
    const applied = await commitWithAudit(
      db,
      [db.prepare('UPDATE orders SET status = ?3 WHERE id = ?1 AND status = ?2').bind('ord_0006', status, other)],
      record({ tool: 'update_order' }),
      { requireChange: true },
    )
    expect(applied.applied).toBe(true)
    expect(await orderStatus('ord_0006')).toBe(other)
    expect(await verifyStoredChain(db)).toMatchObject({ ok: true, count: 1 })
    await db.prepare('UPDATE orders SET status = ?2 WHERE id = ?1').bind('ord_0006', status).run()
  })
})

describe('pruneAudit', () => {
  const day = 86_400_000
  const base = Date.UTC(2026, 0, 1)
  const at = (days: number) => new Date(base + days * day).toISOString()

  it('pruning keeps the chain verifiable from the checkpoint', async () => {
    await appendMany(10, (i) => at(i)) // seq i at day i
    const before = await all(readChain(db))
    const result = await pruneAudit(db, new Date(base + 6 * day), { chunkSize: 2 }) // days 1..5 are older
    expect(result).toEqual({ deleted: 5, checkpoint: { seq: 5, hash: before[4]?.hash } })
    expect(await readCheckpoint(db)).toEqual({ seq: 5, hash: before[4]?.hash })
    expect(await verifyStoredChain(db)).toMatchObject({ ok: true, count: 5, last: { seq: 10 } })
    await appendAudit(db, record())
    expect(await verifyStoredChain(db)).toMatchObject({ ok: true, count: 6, last: { seq: 11 } })
    // Pruning again moves the checkpoint forward, and nothing is left to prune twice.
    expect(await pruneAudit(db, new Date(base + 8 * day))).toMatchObject({ deleted: 2, checkpoint: { seq: 7 } })
    expect(await pruneAudit(db, new Date(base + 8 * day))).toEqual({ deleted: 0 })
    expect(await verifyStoredChain(db)).toMatchObject({ ok: true, count: 4 })
  })

  it('pruning deletes only a prefix: an old row after a newer one is kept', async () => {
    const days = [1, 2, 9, 3, 4]
    await appendMany(days.length, (i) => at(days[i - 1] ?? 0))
    const result = await pruneAudit(db, new Date(base + 5 * day))
    expect(result).toMatchObject({ deleted: 2, checkpoint: { seq: 2 } })
    expect((await all(readChain(db))).map((r) => r.seq)).toEqual([3, 4, 5])
    expect(await verifyStoredChain(db)).toMatchObject({ ok: true, count: 3 })
  })

  it('pruning refuses to destroy the evidence of a broken chain', async () => {
    await appendMany(6, (i) => at(i))
    await db.prepare("UPDATE audit_log SET sub = 'mallory' WHERE seq = 2").run()
    const error = await pruneAudit(db, new Date(base + 5 * day)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(AuditChainError)
    expect(error).toMatchObject({ code: 'audit_chain_broken', result: { seq: 2, reason: 'hash_mismatch' } })
    expect(await count()).toBe(6)
    expect(await readCheckpoint(db)).toBeNull()
  })
})

describe('tampering with stored rows is detected', () => {
  beforeEach(async () => {
    await appendMany(8)
  })

  it('an edited row is named by its seq (hash_mismatch)', async () => {
    await db.prepare("UPDATE audit_log SET outcome = 'denied', http_status = 403 WHERE seq = 4").run()
    expect(await verifyChain(readChain(db, { pageSize: 3 }), GENESIS)).toMatchObject({ ok: false, seq: 4, reason: 'hash_mismatch' })
  })

  it('a deleted row is named by its seq (gap)', async () => {
    await db.prepare('DELETE FROM audit_log WHERE seq = 6').run()
    expect(await verifyChain(readChain(db), GENESIS)).toMatchObject({ ok: false, seq: 6, reason: 'gap' })
  })

  it('a deleted first row is detected (gap at seq 1)', async () => {
    await db.prepare('DELETE FROM audit_log WHERE seq = 1').run()
    expect(await verifyStoredChain(db)).toMatchObject({ ok: false, seq: 1, reason: 'gap' })
  })

  it('two swapped rows are detected at the first of them (prev_hash_mismatch)', async () => {
    await db.batch([
      db.prepare('UPDATE audit_log SET seq = -1 WHERE seq = 3'),
      db.prepare('UPDATE audit_log SET seq = 3 WHERE seq = 4'),
      db.prepare('UPDATE audit_log SET seq = 4 WHERE seq = -1'),
    ])
    expect(await verifyChain(readChain(db), GENESIS)).toMatchObject({ ok: false, seq: 3, reason: 'prev_hash_mismatch' })
  })

  it('a forged prev_hash is detected even with a recomputed hash', async () => {
    const rows = await all(readChain(db))
    const victim = rows[4]
    if (!victim) throw new Error('missing row')
    const forged = await sealRow(victim, { seq: 4, hash: 'f'.repeat(64) })
    await db.prepare('UPDATE audit_log SET prev_hash = ?2, hash = ?3 WHERE seq = ?1').bind(5, forged.prev_hash, forged.hash).run()
    expect(await verifyStoredChain(db)).toMatchObject({ ok: false, seq: 5, reason: 'prev_hash_mismatch' })
  })

  it('a seq rewritten into text is not skipped by the reader', async () => {
    await db.prepare("UPDATE audit_log SET seq = 'x' WHERE seq = 8").run()
    const rows = await all(readChain(db, { pageSize: 3 }))
    expect(rows).toHaveLength(8)
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: false, seq: 8, reason: 'order' })
  })

  it('a forged checkpoint is detected', async () => {
    await db.prepare('DELETE FROM audit_log WHERE seq <= 2').run()
    await db.prepare("INSERT INTO audit_checkpoint (chain, last_seq, last_hash, pruned_at) VALUES (0, 2, ?1, '2026-01-01T00:00:00.000Z')")
      .bind('e'.repeat(64)).run()
    expect(await verifyStoredChain(db)).toMatchObject({ ok: false, seq: 3, reason: 'prev_hash_mismatch' })
  })
})
