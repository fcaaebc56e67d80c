// Lease releases that ride on the next acquire, for both limiter backends.
//
// An isolate does not send a release on its own. The release waits in its
// lane (one per store target: an embedded shard, an Upstash database) for up
// to CARRY_RELEASE_MS; the next acquire this isolate sends to that lane takes
// every waiting release along in the same request (the store applies them
// first, so a subject's own next call never finds its previous lease still
// held). If no acquire comes, the release goes alone, with every release then
// waiting in the lane. A busy isolate thus makes one store request per call,
// not two; a slot is freed at most CARRY_RELEASE_MS after its call ended
// (its own next call excepted). A carrier that fails hands its releases back:
// each owner then sends its own, so nothing is lost.
//
// The state is plain data read by the owner's own timer: no promise crosses
// from the carrying request to the owner's (workerd ties I/O and promise
// continuations to the request that made them).
import type { ConcurrencyRule } from './limiter.ts'

/** How long a release waits to ride on a later acquire before it is sent alone. */
export const CARRY_RELEASE_MS = 25
/** How often an owner looks whether its release was delivered. */
const POLL_MS = 5

/** One lease to release: what Limiter.release was given. */
export interface Release {
  readonly key: string
  readonly concurrency: readonly ConcurrencyRule[]
  readonly leaseId: string
}

interface Queued extends Release {
  state: 'queued' | 'carrying' | 'done' | 'failed'
}

/** The waiting releases of one store target. */
export type Lane = Queued[]

const lanes = new WeakMap<object, Map<string, Lane>>()

/** The lane named `name` of the store `owner` (a namespace, a settings object kept per isolate). */
export function laneOf(owner: object, name: string): Lane {
  let named = lanes.get(owner)
  if (named === undefined) lanes.set(owner, (named = new Map()))
  let lane = named.get(name)
  if (lane === undefined) named.set(name, (lane = []))
  return lane
}

/**
 * Runs `send` with every release waiting in `lane`, marking them delivered
 * when it resolves (and `delivered` of its value, if given, says so) or
 * failed otherwise.
 */
export async function carrying<T>(lane: Lane, send: (releases: Release[]) => Promise<T>, delivered: (value: T) => boolean = () => true): Promise<T> {
  const taken = lane.splice(0)
  for (const q of taken) q.state = 'carrying'
  try {
    const result = await send(taken.map(({ key, concurrency, leaseId }) => ({ key, concurrency, leaseId })))
    const state = delivered(result) ? 'done' : 'failed'
    for (const q of taken) q.state = state
    return result
  } catch (error) {
    for (const q of taken) q.state = 'failed'
    throw error
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Queues `release` in `lane` and resolves once it was delivered: by a later
 * acquire, or by `sendAlone` (with whatever else waits) after
 * CARRY_RELEASE_MS. Rejects when sending it alone failed.
 */
export async function releaseByCarry(lane: Lane, release: Release, timeoutMs: number, sendAlone: (releases: Release[]) => Promise<unknown>): Promise<void> {
  const mine: Queued = { ...release, state: 'queued' }
  lane.push(mine)
  await sleep(CARRY_RELEASE_MS)
  const deadline = Date.now() + timeoutMs
  while (mine.state === 'carrying' && Date.now() < deadline) await sleep(POLL_MS)
  if (mine.state === 'done') return
  if (mine.state !== 'queued') {
    // its carrier failed or never answered: send it alone
    const at = lane.indexOf(mine)
    if (at >= 0) lane.splice(at, 1)
    mine.state = 'queued'
    lane.unshift(mine)
  }
  await carrying(lane, sendAlone)
}
