// Which audit chain a caller's rows go to, and how a chain's sequencer is
// named. Pure: no Worker APIs, so the CLI scripts and unit tests use it too.
//
//   chainOf(sub, chains)  shardOf (src/shard.ts: FNV-1a of `sub`) mod
//                         `chains` (AUDIT_CHAINS). Stable across isolates,
//                         deployments and languages, so one caller always
//                         lands on one chain while AUDIT_CHAINS is unchanged
//                         (changing it moves callers to other chains; every
//                         chain stays verifiable on its own).
//   chainName(n)          'chain-<n>': the Durable Object name of chain n's
//                         AuditSequencer (idFromName), parsed back by
//                         parseChainName inside the object.
import { shardOf } from '../shard.ts'

export function chainOf(sub: string, chains: number): number {
  if (!Number.isSafeInteger(chains) || chains < 1) throw new RangeError('chainOf: "chains" must be a positive integer')
  return shardOf(sub, chains)
}

export function chainName(chain: number): string {
  if (!Number.isSafeInteger(chain) || chain < 0) throw new RangeError('chainName: a chain is a non-negative integer')
  return `chain-${chain}`
}

/** The chain number of a sequencer name, or undefined when it is not 'chain-<n>'. */
export function parseChainName(name: string | undefined): number | undefined {
  const match = name === undefined ? null : /^chain-(0|[1-9]\d{0,8})$/.exec(name)
  return match ? Number(match[1]) : undefined
}
