// The ReplayStore (auth/dpop.ts) over the DPOP_REPLAY Durable Object
// namespace: one object per proof key (by cnf.jkt), one RPC per DPoP request,
// bounded by a timeout. A failure or a timeout throws, and the verifier then
// refuses the request (fail closed: 503, never an unchecked proof).
import type { ReplayStore } from './dpop.ts'

/** The RPC surface of the DpopReplay object (auth/dpop-replay.ts). */
export interface ReplayObject {
  checkAndStore(jti: string, expiresAt: number): Promise<boolean>
}

export interface ReplayNamespace {
  idFromName(name: string): DurableObjectId
  get(id: DurableObjectId): ReplayObject
}

export class ReplayStoreError extends Error {
  override name = 'ReplayStoreError'
}

export const REPLAY_TIMEOUT_MS = 2000

export function durableReplayStore(ns: ReplayNamespace, timeoutMs = REPLAY_TIMEOUT_MS): ReplayStore {
  return {
    async checkAndStore(jkt, jti, expiresAt) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ReplayStoreError(`replay object did not answer within ${timeoutMs} ms`)), timeoutMs)
      })
      try {
        return await Promise.race([ns.get(ns.idFromName(jkt)).checkAndStore(jti, expiresAt), timeout])
      } catch (error) {
        if (error instanceof ReplayStoreError) throw error
        throw new ReplayStoreError(`replay object failed: ${error instanceof Error ? error.message : String(error)}`)
      } finally {
        if (timer !== undefined) clearTimeout(timer)
      }
    },
  }
}
