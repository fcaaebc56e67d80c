// Which of `count` owners a key belongs to: FNV-1a (32-bit) of the key's
// UTF-8 bytes, mod `count`. Stable across isolates, deployments and
// languages, so one key always lands on one owner while `count` is
// unchanged. Used for audit chains (AUDIT_CHAINS) and limiter shards
// (LIMIT_SHARDS). Pure: the CLI scripts and unit tests use it too.

const encoder = new TextEncoder()

export function shardOf(key: string, count: number): number {
  if (!Number.isSafeInteger(count) || count < 1) throw new RangeError('shardOf: "count" must be a positive integer')
  if (count === 1) return 0
  let hash = 0x811c9dc5
  for (const byte of encoder.encode(key)) {
    hash ^= byte
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % count
}
