// A lane: items (lease releases, audit rows) that one request of an isolate
// sends on behalf of others, so a busy isolate makes one store request for
// many calls. Each item has an owner, the request that queued it; whichever
// request sends next takes every item waiting in the lane along. The owner
// reads its item's state with its own timer: no promise crosses from the
// sending request to the owner's (workerd ties I/O and promise
// continuations to the request that made them). An item whose sender failed
// is sent again by its owner (`resend`: for idempotent items, as a failure
// can follow a delivery), or its owner is told so (then it handles the item
// as a failed send of its own).

import { sleep } from './sleep.ts'

interface Entry<T> {
  readonly item: T
  state: 'queued' | 'sending' | 'done' | 'failed'
}

export interface Lane<T> {
  readonly entries: Entry<T>[]
  /** Sends in flight. */
  sending: number
}

const lanes = new WeakMap<object, Map<string, Lane<unknown>>>()

/** The lane named `name` of the store `owner` (a binding, or an object kept per isolate). */
export function laneOf<T>(owner: object, name: string): Lane<T> {
  let named = lanes.get(owner)
  if (named === undefined) lanes.set(owner, (named = new Map()))
  let lane = named.get(name)
  if (lane === undefined) named.set(name, (lane = { entries: [], sending: 0 }))
  return lane as Lane<T>
}

/**
 * Runs `send` with every item waiting in `lane`, marking them delivered when
 * it resolves (and `delivered` of its value, if given, says so), failed
 * otherwise.
 */
export async function sendWaiting<T, R>(lane: Lane<T>, send: (items: T[]) => Promise<R>, delivered: (value: R) => boolean = () => true): Promise<R> {
  const taken = lane.entries.splice(0)
  for (const e of taken) e.state = 'sending'
  lane.sending += 1
  try {
    const result = await send(taken.map((e) => e.item))
    const state = delivered(result) ? 'done' : 'failed'
    for (const e of taken) e.state = state
    return result
  } catch (error) {
    for (const e of taken) e.state = 'failed'
    throw error
  } finally {
    lane.sending -= 1
  }
}

interface DeliverOptions {
  /** How long the item waits for another request to take it before its owner sends (0: only while a send is in flight). */
  waitMs: number
  /** How often the owner looks at its item's state. */
  pollMs: number
  /** Longest the owner waits for another request's send before sending the item itself. */
  timeoutMs: number
  /** When the send that took the item failed: send it again (idempotent items), or reject. */
  onFailure: 'resend' | 'reject'
}

/** The item's sender failed and the lane was told not to resend it. */
class LaneSendFailed extends Error {
  override readonly name = 'LaneSendFailed'
}


/**
 * Queues `item` in `lane` and resolves once it was delivered: by another
 * request's send, or by `sendAlone` (with whatever else waits then). Rejects
 * when the owner's own send failed.
 */
export async function deliver<T>(lane: Lane<T>, item: T, opts: DeliverOptions, sendAlone: (items: T[]) => Promise<unknown>): Promise<void> {
  const mine: Entry<T> = { item, state: 'queued' }
  lane.entries.push(mine)
  const deadline = Date.now() + opts.waitMs + opts.timeoutMs
  if (opts.waitMs > 0) await sleep(opts.waitMs)
  // while another send is in flight, the next one takes this item: wait for it
  while (mine.state === 'queued' && lane.sending > 0 && opts.waitMs === 0 && Date.now() < deadline) await sleep(opts.pollMs)
  while (mine.state === 'sending' && Date.now() < deadline) await sleep(opts.pollMs)
  if (mine.state === 'done') return
  // its sender failed, or has not answered within timeoutMs (it may still deliver it)
  if (mine.state !== 'queued' && opts.onFailure === 'reject') {
    throw new LaneSendFailed(mine.state === 'failed' ? 'the request that carried this item failed' : 'the request that carried this item did not answer in time')
  }
  if (mine.state !== 'queued') {
    // its sender failed or never answered: send it again
    const at = lane.entries.indexOf(mine)
    if (at >= 0) lane.entries.splice(at, 1)
    mine.state = 'queued'
    lane.entries.unshift(mine)
  }
  await sendWaiting(lane, sendAlone)
}
