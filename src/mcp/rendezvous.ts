/**
 * Where a 2025-era client's answer to an elicitation meets the request that
 * asked (mcp/elicitation.ts). The question goes out on the tools/call's own
 * SSE stream; the answer comes back as a separate POST, which may reach
 * another isolate or location. One object per question, named by the
 * question's JSON-RPC id (a random UUID the server chose), so both ends
 * reach the same object wherever they run.
 *
 * Typed RPC:
 *   wait(sub, timeoutMs): the answer, or null once timeoutMs passed.
 *   deliver(sub, message): true when the waiting request (or, arriving
 *     first, the one about to wait) takes it; false when the question is
 *     another subject's or no longer waited for.
 *
 * Memory only: a question lives as long as the asking request, which holds
 * the object while it waits. An answer that arrives before the wait (the
 * client was quicker than the asking request's RPC) is kept for
 * EARLY_ANSWER_MS.
 */
import { DurableObject } from 'cloudflare:workers'

const EARLY_ANSWER_MS = 30_000

/** A JSON-RPC response, as the client sent it. */
export type Answer = Record<string, string | number | boolean | null | object>

export class ElicitationRendezvous extends DurableObject {
  private waiting: { sub: string; resolve: (message: Answer | null) => void } | undefined
  private early: { sub: string; message: Answer; until: number } | undefined
  private answered = false

  async wait(sub: string, timeoutMs: number): Promise<Answer | null> {
    if (this.waiting || this.answered) throw new Error('this question is already waited for')
    if (this.early && this.early.sub === sub && this.early.until > Date.now()) {
      const { message } = this.early
      this.early = undefined
      this.answered = true
      return message
    }
    return new Promise<Answer | null>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = undefined
        this.answered = true
        resolve(null)
      }, timeoutMs)
      this.waiting = {
        sub,
        resolve: (message) => {
          clearTimeout(timer)
          this.waiting = undefined
          this.answered = true
          resolve(message)
        },
      }
    })
  }

  async deliver(sub: string, message: Answer): Promise<boolean> {
    if (this.answered) return false
    if (this.waiting) {
      if (this.waiting.sub !== sub) return false
      this.waiting.resolve(message)
      return true
    }
    if (this.early && this.early.until > Date.now()) return false
    this.early = { sub, message, until: Date.now() + EARLY_ANSWER_MS }
    return true
  }
}
