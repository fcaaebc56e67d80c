// Lease releases ride on the next acquire, for both limiter backends
// (src/lane.ts): a release waits in its lane (one per store target: an
// embedded shard, an Upstash database) for up to CARRY_RELEASE_MS; the next
// acquire this isolate sends there takes every waiting release along in the
// same request, and the store applies them first, so a subject's own next
// call never finds its previous lease still held. If no acquire comes, the
// release goes alone, with every release then waiting. A busy isolate thus
// makes one store request per call, not two; a slot is freed at most
// CARRY_RELEASE_MS after its call ended (its own next call excepted).
// Releasing twice is harmless (a release is idempotent).
import { deliver, type Lane } from '../lane.ts'
import type { ConcurrencyRule } from './limiter.ts'

/** How long a release waits to ride on a later acquire before it is sent alone. */
export const CARRY_RELEASE_MS = 25

/** One lease to release: what Limiter.release was given. */
export interface Release {
  readonly key: string
  readonly concurrency: readonly ConcurrencyRule[]
  readonly leaseId: string
}

/** Queues `release` and resolves once it was delivered, by an acquire or by `sendAlone`. */
export function releaseByCarry(lane: Lane<Release>, release: Release, timeoutMs: number, sendAlone: (releases: Release[]) => Promise<unknown>): Promise<void> {
  return deliver(lane, release, { waitMs: CARRY_RELEASE_MS, pollMs: 5, timeoutMs, onFailure: 'resend' }, sendAlone)
}
