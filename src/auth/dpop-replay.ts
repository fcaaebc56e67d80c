/**
 * DPoP `jti` replay store (RFC 9449 §11.1): one Durable Object per proof key,
 * named by the key's RFC 7638 thumbprint (the token's `cnf.jkt`), so the jtis
 * a key has used live with the one owner that can decide "seen once" exactly,
 * across every isolate and location. Only proofs that passed every other check
 * (signature, htm/htu, iat, ath, cnf.jkt) reach it, so a caller can only fill
 * the object of a key it holds a bound token for.
 *
 * Typed RPC (one round trip per DPoP request, via Workers RPC on the stub):
 *   checkAndStore(jti: string, expiresAt: number): boolean
 *     true when `jti` was not seen (or its record has expired) and is now
 *     recorded until `expiresAt` (seconds since epoch); false for a replay.
 *
 * Exactness: the check and the write are one SQLite statement, and an object
 * runs its handlers one at a time, so of any number of concurrent calls with
 * one jti exactly one gets true. Records are durable (SQLite storage), so an
 * evicted or restarted object still refuses a replay.
 *
 * Cleanup: an alarm at the earliest expiry deletes expired records and
 * re-arms for the next; when none are left the object's storage is deleted
 * whole, so idle keys cost nothing.
 */
import { DurableObject } from 'cloudflare:workers'

export class DpopReplay extends DurableObject {
  private tableReady = false

  private ensureTable(): void {
    if (this.tableReady) return
    this.ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS seen (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID')
    this.tableReady = true
  }

  async checkAndStore(jti: string, expiresAt: number): Promise<boolean> {
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw new TypeError('jti must be a string of 1..256 characters')
    if (!Number.isSafeInteger(expiresAt)) throw new TypeError('expiresAt must be an integer number of seconds')
    this.ensureTable()
    const now = Math.floor(Date.now() / 1000)
    // Insert, or take over a record that has expired; a live record is left
    // alone and nothing is written (rowsWritten 0): the replay.
    const cursor = this.ctx.storage.sql.exec(
      'INSERT INTO seen (jti, expires_at) VALUES (?1, ?2) ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at WHERE seen.expires_at <= ?3',
      jti,
      expiresAt,
      now,
    )
    cursor.toArray()
    const fresh = cursor.rowsWritten > 0
    if (fresh && (await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm((expiresAt + 1) * 1000)
    return fresh
  }

  override async alarm(): Promise<void> {
    this.ensureTable()
    const now = Math.floor(Date.now() / 1000)
    this.ctx.storage.sql.exec('DELETE FROM seen WHERE expires_at <= ?1', now)
    const next = this.ctx.storage.sql.exec<{ next: number | null }>('SELECT MIN(expires_at) AS next FROM seen').one().next
    if (next === null) {
      // No event is delivered while a storage operation runs (input gate), so
      // no jti can be recorded between this decision and the wipe.
      this.tableReady = false
      await this.ctx.storage.deleteAll()
    } else {
      await this.ctx.storage.setAlarm((next + 1) * 1000)
    }
  }
}
