// The audit log against a real D1 (workerd + miniflare): concurrency, the
// atomicity of a mutation with its audit row, pruning, and tamper detection
// on what is actually stored.
import { env } from 'cloudflare:workers'
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

/** A fresh sequencer (its own name, so it loads the head from D1 as it is now). */
function freshSequencer(): DurableObjectStub<AuditSequencer> {
  return env.AUDIT_SEQUENCER.get(env.AUDIT_SEQUENCER.idFromName(`test-${crypto.randomUUID()}`))
}

/** Waits until D1 holds `n` audit rows (the sequencer drains its outbox after append returns). */
async function rowsLanded(n: number): Promise<void> {
  await vi.waitFor(async () => expect(await count()).toBe(n), { timeout: 10_000, interval: 20 })
}

describe('AuditSequencer', { timeout: 20_000 }, () => {
  it('concurrent appends never fork the chain: 50 parallel appends give seq 1..50 in D1 and a valid chain', async () => {
    const seq = freshSequencer()
    const heads = await Promise.all(Array.from({ length: 50 }, (_, i) => seq.append(record({ request_id: `req-${i}` }))))
    expect(new Set(heads.map((h) => h.seq)).size).toBe(50)
    await rowsLanded(50)
    const stored = await all(readChain(db, 7))
    expect(stored.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
    expect(new Set(stored.map((r) => r.request_id)).size).toBe(50)
    expect(await verifyChain(stored, GENESIS)).toEqual({ ok: true, count: 50, last: { seq: 50, hash: stored[49]?.hash } })
  })

  it('appends and mutations interleaved: every change applied once, gap-free verifying chain', async () => {
    const seq = freshSequencer()
    const ids = Array.from({ length: 20 }, (_, i) => `tkt_seq_${i}_${crypto.randomUUID().slice(0, 8)}`)
    const results = await Promise.all(ids.flatMap((id) => [
      seq.commit([{ sql: `INSERT INTO tickets (id, customer_id, subject, body, created_by, created_at)
        VALUES (?1, 'cus_001', 'audit seq', 'body', 'alice', ?2)`, params: [id, new Date().toISOString()] }],
      record({ tool: 'create_ticket', request_id: id }), { requireChange: true }),
      seq.append(record()),
    ]))
    expect(results.filter((r) => 'applied' in r && r.applied)).toHaveLength(20)
    await rowsLanded(40)
    const placeholders = ids.map((_, i) => `?${i + 1}`).join(', ')
    expect(await db.prepare(`SELECT count(*) AS n FROM tickets WHERE id IN (${placeholders})`).bind(...ids).first<number>('n')).toBe(20)
    const rows = await all(readChain(db))
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
    expect(rows.filter((r) => ids.includes(r.request_id))).toHaveLength(20)
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: true, count: 40 })
  })

  it('a failing mutation batch leaves neither change nor row and does not consume the seq', async () => {
    const seq = freshSequencer()
    await seq.append(record())
    await rowsLanded(1)
    const id = `tkt_fail_${crypto.randomUUID().slice(0, 8)}`
    // The second statement violates NOT NULL: the whole batch is rolled back.
    expect(await seq.commit([
      { sql: `INSERT INTO tickets (id, customer_id, subject, body, created_by, created_at) VALUES (?1, 'cus_001', 's', 'b', 'alice', ?2)`, params: [id, new Date().toISOString()] },
      { sql: `INSERT INTO tickets (id, customer_id, subject, body, created_by, created_at) VALUES (?1, 'cus_001', NULL, 'b', 'alice', ?2)`, params: [`${id}_x`, new Date().toISOString()] },
    ], record({ tool: 'create_ticket' }))).toEqual({ applied: false, reason: 'batch_failed' })
    const noChange = await seq.commit([{ sql: `UPDATE tickets SET subject = 'x' WHERE id = ?1`, params: ['tkt_does_not_exist'] }], record(), { requireChange: true })
    expect(noChange).toEqual({ applied: false, reason: 'no_change' })
    expect(await db.prepare('SELECT count(*) AS n FROM tickets WHERE id = ?1').bind(id).first<number>('n')).toBe(0)
    expect(await count()).toBe(1)
    const next = await seq.append(record())
    expect(next.seq).toBe(2)
    await rowsLanded(2)
    expect(await verifyStoredChain(db)).toMatchObject({ ok: true, count: 2 })
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
    expect(await verifyChain(readChain(db, 3), GENESIS)).toMatchObject({ ok: false, seq: 4, reason: 'hash_mismatch' })
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
    const rows = await all(readChain(db, 3))
    expect(rows).toHaveLength(8)
    expect(await verifyChain(rows, GENESIS)).toMatchObject({ ok: false, seq: 8, reason: 'order' })
  })

  it('a forged checkpoint is detected', async () => {
    await db.prepare('DELETE FROM audit_log WHERE seq <= 2').run()
    await db.prepare("INSERT INTO audit_checkpoint (id, last_seq, last_hash, pruned_at) VALUES (1, 2, ?1, '2026-01-01T00:00:00.000Z')")
      .bind('e'.repeat(64)).run()
    expect(await verifyStoredChain(db)).toMatchObject({ ok: false, seq: 3, reason: 'prev_hash_mismatch' })
  })
})
