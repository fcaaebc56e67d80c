// One audited tools/call: the single owner of its audit row. Whichever of the
// three ways of ending a call writes first is the row; every later one is a
// no-op, so "exactly one row per call" is decided here and nowhere else.
//
//   * commit(statements, output): a mutation. The change and its audit row
//     go to the chain's AuditSequencer in one D1 batch, or neither is applied.
//   * finish(report): the tool boundary's outcome; resolves once the row is
//     durable (the caller awaits it before answering), and failures feed the
//     alert throttle.
//   * finishFromHttp(status, error): a call the tool boundary never reported
//     on (403, 429, 503, arguments or tool name refused by the SDK); the
//     outcome is read from the HTTP result. Resolves likewise.
//
// `round(report)` writes a row of its own without ending the call: the
// confirmation request of a 2025-era call, whose confirmed round follows in
// the same HTTP exchange (README "Confirmation"). Such a call answers with
// an SSE stream that outlives the middleware: `answerStreams(done)` makes
// finishFromHttp wait (in waitUntil) for the stream's end instead of
// reading an outcome off a response still being written.
//
// A commit in flight holds the row: a finish arriving meanwhile waits for it
// and writes only if the change was not applied.
import type { Config } from '../config.ts'
import type { SqlStatement } from '../db/queries.ts'
import { AppError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { POLICY } from '../policy/policy.ts'
import type { AuditOutcome } from './chain.ts'
import { auditRecord, type CallEnding, type CallFacts } from './record.ts'
import { alertOn, appendRow, sequencer } from './writer.ts'

type ToolOutcome = 'ok' | 'tool_error' | 'invalid_input' | 'denied' | 'timeout' | 'error' | 'confirmation_requested' | 'confirmed' | 'declined' | 'expired'

/** How the tool boundary ended a call. */
export interface ToolReport {
  outcome: ToolOutcome
  /** Stable machine code for failures (ToolError.code, "timeout", "internal"). */
  errorCode: string | undefined
  /** The JSON text of what the tool returned (structured content), when it returned. */
  outputJson: string | undefined
}

interface AuditedCallDeps {
  facts: CallFacts
  /** The caller's audit chain (chainOf). */
  chain: number
  /** Bindings holding AUDIT_SEQUENCER. */
  env: Env
  log: Logger
  /** For alert delivery. */
  config: Config
  /** Keeps the after-response append alive (ExecutionContext.waitUntil). */
  waitUntil: (promise: Promise<unknown>) => void
}

/** Outcome of a call the tool boundary did not report on, from the HTTP result. */
function outcomeOfStatus(status: number, error: Error | undefined): { outcome: AuditOutcome; errorCode: string } {
  if (error instanceof AppError) {
    if (error.kind === 'insufficient_scope') return { outcome: 'denied', errorCode: 'insufficient_scope' }
    if (error.status === 429) return { outcome: 'rate_limited', errorCode: error.kind }
    if (error.status >= 500) return { outcome: 'error', errorCode: error.kind }
    return { outcome: 'invalid_input', errorCode: error.kind }
  }
  if (status === 403) return { outcome: 'denied', errorCode: 'forbidden' }
  if (status === 429) return { outcome: 'rate_limited', errorCode: 'rate_limited' }
  if (status >= 500) return { outcome: 'error', errorCode: 'internal' }
  // 200 without a tool report: the SDK refused the arguments (schema) or the tool name.
  return { outcome: 'invalid_input', errorCode: 'invalid_arguments' }
}

/** HTTP status of a call the tool boundary answered: the tool result travels in a 200. */
const TOOL_RESULT_STATUS = 200

export class AuditedCall {
  /** open: no row yet; committing: a commit holds the row; written: the row is taken. */
  private state: { kind: 'open' } | { kind: 'committing'; applied: Promise<boolean> } | { kind: 'written' } = { kind: 'open' }

  /** Set when the answer streams past the middleware: resolves after its last message. */
  private streamed: Promise<void> | undefined

  constructor(private readonly deps: AuditedCallDeps) {}

  /** The answer streams until `done`: the HTTP outcome is read only then. */
  answerStreams(done: Promise<void>): void {
    this.streamed = done
  }

  /**
   * Applies `statements` and the call's ok row in one batch. True when applied,
   * false when the statements changed nothing (no row written); throws when the
   * batch failed (nothing applied) or when the call already has its row.
   */
  commit(statements: SqlStatement[], output: unknown, outcome: 'ok' | 'confirmed' = 'ok'): Promise<boolean> {
    if (this.state.kind !== 'open') return Promise.reject(new Error('audit: this call already has its audit row'))
    const applied = this.commitNow(statements, output, outcome)
    const settled = applied.then(
      (ok) => ok,
      () => false,
    )
    const committing = { kind: 'committing', applied: settled } as const
    this.state = committing
    void settled.then((ok) => {
      // A finish that arrived meanwhile has already taken the row.
      if (this.state === committing) this.state = ok ? { kind: 'written' } : { kind: 'open' }
    })
    return applied
  }

  /** Records the tool boundary's outcome, unless the call already has its row; resolves once it is written. */
  finish(report: ToolReport): Promise<void> {
    return this.appendOnce({ outcome: report.outcome, httpStatus: TOOL_RESULT_STATUS, errorCode: report.errorCode, outputJson: report.outputJson })
  }

  /** Records one round of the call (a row of its own); the call's own row is still to come. Resolves once it is written. */
  async round(report: ToolReport): Promise<void> {
    const { facts, env, chain, log } = this.deps
    const record = await auditRecord(facts, { outcome: report.outcome, httpStatus: TOOL_RESULT_STATUS, errorCode: report.errorCode, outputJson: report.outputJson })
    await appendRow(env, record, log, chain)
  }

  /** Records a call from its HTTP result, unless the call already has its row; resolves once it is written. */
  finishFromHttp(status: number, error: Error | undefined): Promise<void> {
    if (this.streamed) {
      const streamed = this.streamed
      this.streamed = undefined
      this.deps.waitUntil(streamed.then(() => this.finishFromHttp(status, error)))
      return Promise.resolve()
    }
    const ending: CallEnding = { ...outcomeOfStatus(status, error), httpStatus: status, outputJson: undefined }
    const tool = this.deps.facts.toolName
    if (tool !== undefined && !POLICY.tools.has(tool)) ending.errorCode = 'unknown_tool'
    return this.appendOnce(ending)
  }

  private async commitNow(statements: SqlStatement[], output: unknown, outcome: 'ok' | 'confirmed'): Promise<boolean> {
    const { facts, env, chain, log } = this.deps
    const record = await auditRecord(facts, { outcome, httpStatus: TOOL_RESULT_STATUS, outputJson: JSON.stringify(output) })
    const result = await sequencer(env, chain).commit(statements, { ...record, duration_ms: Math.max(0, Date.now() - facts.startedAt) }, { requireChange: true })
    if (result.applied) {
      log('debug', 'audit_written', { chain, seq: result.seq, hash: result.hash, outcome })
      return true
    }
    if (result.reason === 'no_change') return false
    // The batch failed (detail in the sequencer's audit_commit_failed line):
    // nothing was applied, and the tool reports an internal error.
    throw new Error(`audit: mutation not applied (${result.reason})`)
  }

  private appendOnce(ending: CallEnding): Promise<void> {
    const state = this.state
    if (state.kind === 'written') return Promise.resolve()
    this.state = { kind: 'written' }
    const { facts, env, chain, log, config } = this.deps
    const pending = state.kind === 'committing' ? state.applied : Promise.resolve(false)
    const written = pending.then(async (applied) => {
      if (applied) return
      const record = await auditRecord(facts, ending)
      // alerts go after the answer; the row before it
      this.deps.waitUntil(Promise.all(alertOn(record, config, log)))
      await appendRow(env, record, log, chain)
    })
    this.deps.waitUntil(written)
    return written
  }
}
