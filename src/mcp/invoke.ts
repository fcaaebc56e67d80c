// The tool boundary: every tool runs inside it. It gives the tool its narrowed
// context and a time limit, turns the result into MCP content, and maps
// failures to what a client may see:
//   ToolError           → isError with the tool's own (public) message
//   time limit reached  → isError "timed out after Ns"; the work is aborted
//   anything else       → isError "internal error (request <id>)"; detail logged
// Token budgets (estimated tokens, src/limits/estimate.ts): arguments over the
// policy's budget are refused before the tool runs. The output cap bounds the
// whole result as sent — the JSON text content, the structuredContent copy of
// it and the truncation marker together: a result over it is cut to fit (rows
// dropped, long strings shortened), with a visible marker in the text and
// `_meta["io.bastion/truncation"]` describing the cut (returnedTokens: the
// whole result as sent; limitTokens: the cap).
// It hands the outcome to the request's audited call, and answers once the
// call's audit row is durable.
import type { CallToolResult } from '@modelcontextprotocol/server'
import { createDataAccess, type Commit } from '../db/queries.ts'
import { POLICY, type ToolSettings } from '../policy/policy.ts'
import { capStructured, truncationMarker } from '../limits/cap-output.ts'
import { estimateTokens } from '../limits/estimate.ts'
import { ToolError, type ToolContext, type ToolDefinition } from '../tools/define.ts'
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

/** Estimated tokens of a truncation marker with the largest numbers it can hold. */
const MARKER_RESERVE = estimateTokens(
  `\n${truncationMarker({ value: null, truncated: true, originalTokens: 999_999_999, returnedTokens: 0, droppedItems: 999_999_999, totalItems: 999_999_999, shortenedStrings: 999_999_999 }, 999_999_999)}`,
)

/**
 * Cuts `output` so that the whole result as sent — `text` (the JSON and the
 * marker) plus the JSON of `value` (the structuredContent) — is within
 * `limit` estimated tokens, when any shape of it fits; `report` describes the
 * cut in terms of that whole result, whose uncut size is `originalTokens`.
 */
function fitWhole(tool: ToolDefinition, output: Record<string, unknown>, args: unknown, limit: number, originalTokens: number) {
  let budget = Math.floor((limit - MARKER_RESERVE) / 2)
  for (let attempt = 0; ; attempt++) {
    const capped = capStructured(output, Math.max(0, budget))
    const value = capped.droppedItems > 0 && tool.resumeAfterCap ? tool.resumeAfterCap(capped.value as never, output as never, args as never) : capped.value
    const json = JSON.stringify(value)
    const jsonTokens = estimateTokens(json)
    const whole = (returnedTokens: number) => {
      const report = { ...capped, originalTokens, returnedTokens }
      const text = `${json}\n${truncationMarker(report, limit)}`
      return { text, tokens: estimateTokens(text) + jsonTokens }
    }
    const fits = whole(0)
    if (fits.tokens <= limit) return { value, json, text: fits.text, report: { ...capped, originalTokens, returnedTokens: fits.tokens } }
    if (budget <= 0 || attempt >= 4) {
      // no shape fits: the marker says so
      const over = whole(fits.tokens)
      return { value, json, text: over.text, report: { ...capped, originalTokens, returnedTokens: over.tokens } }
    }
    budget -= Math.ceil((fits.tokens - limit) / 2)
  }
}

/** The tool's narrowed context; its writes commit through the request's audited call, as `outcome`. */
function toolContext(scope: RequestScope, signal: AbortSignal, outcome: 'ok' | 'confirmed', confirmed?: string): ToolContext {
  // A tool whose time ran out must not start a write after the caller was told it stopped.
  const commit: Commit = (statements, output) => {
    if (!scope.call) return Promise.reject(new Error('refusing a write outside an audited tools/call'))
    if (signal.aborted) return Promise.reject(new TimeoutError('aborted before commit'))
    return scope.call.commit(statements, output, outcome)
  }
  return {
    principal: scope.principal,
    signal,
    requestId: scope.requestId,
    data: createDataAccess(scope.db, commit, { allowedTables: POLICY.queryableTables, maxRows: POLICY.maxQueryRows, maxBytes: POLICY.maxQueryBytes, maxVisitedRows: POLICY.maxQueryVisitedRows }, scope.rows),
    now: () => new Date(),
    ...(confirmed === undefined ? {} : { confirmed }),
  }
}

const invocationSignal = (settings: ToolSettings, clientSignal: AbortSignal | undefined) =>
  AbortSignal.any([AbortSignal.timeout(settings.timeoutMs), ...(clientSignal ? [clientSignal] : [])])

/** Records the call's row (`report`) and answers with `text` as a tool error. */
export async function refuseCall(scope: RequestScope, report: ToolReport, text: string): Promise<CallToolResult> {
  await scope.call?.finish(report)
  return { content: [{ type: 'text', text }], isError: true }
}

/** What a client may see of a failure of `tool`, and how the call is recorded. */
function failureOf(error: unknown, tool: ToolDefinition, settings: ToolSettings, scope: RequestScope): { report: ToolReport; text: string } {
  if (error instanceof ToolError) return { report: { outcome: error.outcome, errorCode: error.code, outputJson: undefined }, text: error.message }
  if (error instanceof TimeoutError) {
    const seconds = Math.round(settings.timeoutMs / 100) / 10
    scope.log('warn', 'tool_timeout', { tool: tool.name, timeoutMs: settings.timeoutMs, cancelled: error.message === 'cancelled' })
    return {
      report: { outcome: 'timeout', errorCode: 'timeout', outputJson: undefined },
      text: `${tool.name} timed out after ${seconds}s; the work was aborted (a change already being saved at that moment may still have been applied: check before retrying)`,
    }
  }
  scope.log('error', 'tool_failed', {
    tool: tool.name,
    error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    stack: error instanceof Error ? error.stack : undefined,
  })
  return { report: { outcome: 'error', errorCode: 'internal', outputJson: undefined }, text: `internal error (request ${scope.requestId})` }
}

/**
 * What a confirmed call of `tool` will change, in words for the user
 * (`tool.confirmation`, under the tool's time limit); a failure (the order
 * does not exist, the move is not allowed) is the call's answer instead,
 * recorded, and nobody is asked.
 */
export async function describeChange(
  tool: ToolDefinition,
  settings: ToolSettings,
  args: unknown,
  scope: RequestScope,
  clientSignal: AbortSignal | undefined,
): Promise<{ ok: true; text: string } | { ok: false; result: CallToolResult }> {
  if (!tool.confirmation) return { ok: true, text: `${tool.title} (${tool.name}) with ${JSON.stringify(args ?? {})}` }
  const signal = invocationSignal(settings, clientSignal)
  try {
    return { ok: true, text: await abortable(tool.confirmation(args as never, toolContext(scope, signal, 'ok')), signal, settings.timeoutMs) }
  } catch (error) {
    const { report, text } = failureOf(error, tool, settings, scope)
    return { ok: false, result: await refuseCall(scope, report, text) }
  }
}

/**
 * Runs `tool` for this request. `confirmed`: the change the user confirmed
 * for this very call (mcp/confirm.ts); its row says `confirmed`.
 */
export async function invokeTool(
  tool: ToolDefinition,
  settings: ToolSettings,
  args: unknown,
  scope: RequestScope,
  clientSignal: AbortSignal | undefined,
  confirmed?: string,
): Promise<CallToolResult> {
  const signal = invocationSignal(settings, clientSignal)
  const ok = confirmed === undefined ? 'ok' : 'confirmed'
  const ctx = toolContext(scope, signal, ok, confirmed)
  // the call's audit row is durable before the result is returned
  const record = async (report: ToolReport) => {
    await scope.call?.finish(report)
  }
  const argumentTokens = estimateTokens(JSON.stringify(args ?? {}))
  if (argumentTokens > POLICY.maxArgumentTokens) {
    return refuseCall(scope, { outcome: 'invalid_input', errorCode: 'argument_budget', outputJson: undefined },
      `arguments are about ${argumentTokens.toLocaleString('en-US')} tokens; the limit is ${POLICY.maxArgumentTokens.toLocaleString('en-US')} tokens per call`,
    )
  }
  try {
    const work = tool.run(args as never, ctx)
    // If the time runs out first, the statements it sent still run: the
    // request's concurrency leases wait for them.
    scope.pending?.add(work)
    const output = (await abortable(work, signal, settings.timeoutMs)) as Record<string, unknown>
    const limit = settings.outputTokens
    // the JSON goes out twice (text and structuredContent): each copy gets half the cap
    const whole = JSON.stringify(output)
    const wholeTokens = estimateTokens(whole)
    if (wholeTokens <= Math.floor(limit / 2)) {
      await record({ outcome: ok, errorCode: undefined, outputJson: whole })
      return { content: [{ type: 'text', text: whole }], structuredContent: output }
    }
    const { value, json, text, report } = fitWhole(tool, output, args, limit, 2 * wholeTokens)
    await record({ outcome: ok, errorCode: undefined, outputJson: json })
    return {
      content: [{ type: 'text', text }],
      structuredContent: value,
      _meta: {
        'io.bastion/truncation': {
          limitTokens: limit,
          originalTokens: report.originalTokens,
          returnedTokens: report.returnedTokens,
          droppedItems: report.droppedItems,
          shortenedStrings: report.shortenedStrings,
        },
      },
    }
  } catch (error) {
    const { report, text } = failureOf(error, tool, settings, scope)
    return refuseCall(scope, report, text)
  }
}
