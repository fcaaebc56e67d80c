// The tool boundary: every tool runs inside it. It gives the tool its narrowed
// context and a time limit, turns the result into MCP content, and maps
// failures to what a client may see:
//   ToolError           → isError with the tool's own (public) message
//   time limit reached  → isError "timed out after Ns"; the work is aborted
//   anything else       → isError "internal error (request <id>)"; detail logged
// Token budgets (estimated tokens, src/limits/estimate.ts): arguments over the
// policy's budget are refused before the tool runs; output over the tool's
// cap is cut to fit (rows dropped, long strings shortened), with a visible
// marker in the text and `_meta["io.bastion/truncation"]` describing the cut.
// It hands the outcome to the request's audited call.
import type { CallToolResult } from '@modelcontextprotocol/server'
import { createDataAccess, type Commit } from '../db/queries.ts'
import { POLICY, type ToolSettings } from '../policy/policy.ts'
import { capStructured, truncationMarker } from '../limits/cap-output.ts'
import { estimateTokens } from '../limits/estimate.ts'
import { ToolError, type ToolDefinition } from '../tools/define.ts'
import type { ToolReport } from '../audit/audited-call.ts'
import type { RequestScope } from './scope.ts'

class TimeoutError extends Error {}

function abortable<T>(work: Promise<T>, signal: AbortSignal, timeoutMs: number): Promise<T> {
  if (signal.aborted) return Promise.reject(new TimeoutError())
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError' ? new TimeoutError(`${timeoutMs}`) : new TimeoutError('cancelled'))
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}

export async function invokeTool(
  tool: ToolDefinition,
  settings: ToolSettings,
  args: unknown,
  scope: RequestScope,
  clientSignal: AbortSignal | undefined,
): Promise<CallToolResult> {
  const signal = AbortSignal.any([AbortSignal.timeout(settings.timeoutMs), ...(clientSignal ? [clientSignal] : [])])
  // A tool whose time ran out must not start a write after the caller was told it stopped.
  const commit: Commit = (statements, output) => {
    if (!scope.call) return Promise.reject(new Error('refusing a write outside an audited tools/call'))
    if (signal.aborted) return Promise.reject(new TimeoutError('aborted before commit'))
    return scope.call.commit(statements, output)
  }
  const ctx = {
    principal: scope.principal,
    signal,
    requestId: scope.requestId,
    data: createDataAccess(scope.db, commit, { allowedTables: POLICY.queryableTables, maxRows: POLICY.maxQueryRows, maxBytes: POLICY.maxQueryBytes, maxVisitedRows: POLICY.maxQueryVisitedRows }),
    now: () => new Date(),
  }
  const record = (report: ToolReport) => scope.call?.finish(report)
  const failed = (report: ToolReport, text: string): CallToolResult => {
    record(report)
    return { content: [{ type: 'text', text }], isError: true }
  }
  const argumentTokens = estimateTokens(JSON.stringify(args ?? {}))
  if (argumentTokens > POLICY.maxArgumentTokens) {
    return failed({ outcome: 'invalid_input', errorCode: 'argument_budget', outputJson: undefined },
      `arguments are about ${argumentTokens.toLocaleString('en-US')} tokens; the limit is ${POLICY.maxArgumentTokens.toLocaleString('en-US')} tokens per call`,
    )
  }
  try {
    const work = tool.run(args as never, ctx)
    // If the time runs out first, the statements it sent still run: the
    // request's concurrency leases wait for them.
    scope.pending?.add(work)
    const output = (await abortable(work, signal, settings.timeoutMs)) as Record<string, unknown>
    const capped = capStructured(output, settings.outputTokens)
    const json = JSON.stringify(capped.value)
    record({ outcome: 'ok', errorCode: undefined, outputJson: json })
    if (!capped.truncated) return { content: [{ type: 'text', text: json }], structuredContent: output }
    const marker = truncationMarker(capped, settings.outputTokens)
    return {
      content: [{ type: 'text', text: `${json}\n${marker}` }],
      structuredContent: capped.value,
      _meta: {
        'io.bastion/truncation': {
          limitTokens: settings.outputTokens,
          originalTokens: capped.originalTokens,
          returnedTokens: capped.returnedTokens,
          droppedItems: capped.droppedItems,
          shortenedStrings: capped.shortenedStrings,
        },
      },
    }
  } catch (error) {
    if (error instanceof ToolError) {
      return failed({ outcome: error.outcome, errorCode: error.code, outputJson: undefined }, error.message)
    }
    if (error instanceof TimeoutError) {
      const seconds = Math.round(settings.timeoutMs / 100) / 10
      scope.log('warn', 'tool_timeout', { tool: tool.name, timeoutMs: settings.timeoutMs, cancelled: error.message === 'cancelled' })
      return failed({ outcome: 'timeout', errorCode: 'timeout', outputJson: undefined }, `${tool.name} timed out after ${seconds}s; the work was aborted (a change already being saved at that moment may still have been applied: check before retrying)`)
    }
    scope.log('error', 'tool_failed', {
      tool: tool.name,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      stack: error instanceof Error ? error.stack : undefined,
    })
    return failed({ outcome: 'error', errorCode: 'internal', outputJson: undefined }, `internal error (request ${scope.requestId})`)
  }
}
