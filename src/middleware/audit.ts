// Audit: wraps everything after authentication for tools/call, so every
// outcome of an authenticated caller is recorded — success, tool error,
// invalid input, 403 denial, 429, timeout, internal error — exactly once.
//
//   * Each caller's rows go to one chain: chainOf(sub, AUDIT_CHAINS).
//   * Mutations are recorded by the tool's own commit: the chain's
//     AuditSequencer runs the business change (as {sql, params} data) and its
//     audit row in one D1 batch; if the audit row cannot be written, the
//     change is not applied.
//   * Everything else is handed to the sequencer after the response
//     (waitUntil); it is durable once accepted.
//   * Failures feed the alert throttle.
// Unauthenticated requests never reach this step: they are logged by the
// Worker, not stored, so an anonymous flood cannot become a D1 write flood.
import { createMiddleware } from 'hono/factory'
import type { AuditOutcome } from '../audit/chain.ts'
import { auditRecord, type CallFacts } from '../audit/record.ts'
import { chainOf } from '../audit/chains.ts'
import { alertOn, appendLater, sequencer } from '../audit/writer.ts'
import type { AppEnv } from '../env.ts'
import { AppError } from '../errors.ts'
import { POLICY } from '../policy/policy.ts'

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

export const audit = () =>
  createMiddleware<AppEnv>(async function audit(c, next) {
    const { rpc } = c.var
    if (rpc.method !== 'tools/call') return next()

    const facts: CallFacts = { requestId: c.var.requestId, startedAt: c.var.startedAt, principal: c.var.principal, rpc }
    const chain = chainOf(c.var.principal.sub, c.var.config.auditChains)
    let auditedInline = false
    // Mutations: the change and its audit row commit in one D1 batch, or neither does.
    c.set('commit', async (statements, output) => {
      const record = await auditRecord(facts, { outcome: 'ok', httpStatus: 200, outputJson: JSON.stringify(output) })
      const result = await sequencer(c.env, chain).commit(statements, { ...record, duration_ms: Math.max(0, Date.now() - facts.startedAt) }, {
        requireChange: true,
      })
      if (result.applied) {
        auditedInline = true
        c.var.log('debug', 'audit_written', { chain, seq: result.seq, hash: result.hash, outcome: 'ok' })
        return true
      }
      if (result.reason === 'no_change') return false
      // The batch failed (detail in the sequencer's audit_commit_failed line):
      // nothing was applied, and the tool reports an internal error.
      throw new Error(`audit: mutation not applied (${result.reason})`)
    })

    await next()

    if (auditedInline) return
    const report = c.var.scope?.report
    const status = c.res.status
    const ending = report
      ? { outcome: report.outcome, httpStatus: status, errorCode: report.errorCode, outputJson: report.outputJson }
      : { ...outcomeOfStatus(status, c.error), httpStatus: status, outputJson: undefined }
    if (!report && rpc.toolName !== undefined && !POLICY.tools.has(rpc.toolName)) ending.errorCode = 'unknown_tool'
    const record = await auditRecord(facts, ending)
    const { log, config } = c.var
    c.executionCtx.waitUntil(Promise.all([appendLater(c.env, record, log, chain), ...alertOn(record, config, log)]))
  })
