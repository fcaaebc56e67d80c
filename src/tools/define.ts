// How a tool is declared: in full (title, description, zod input with a
// description on every field, output schema, annotations) and with a `run`
// that gets only a narrowed context — its data access, the principal, an
// AbortSignal and the request id — never `env` or the raw D1 binding.
// Annotations are hints for clients, never a security boundary: the policy is.
import type { ToolAnnotations } from '@modelcontextprotocol/server'
import type * as z from 'zod'
import type { Principal } from '../auth/principal.ts'
import type { DataAccess } from '../db/queries.ts'
import { missingClaimText } from '../policy/row-scope.ts'

export interface ToolContext {
  principal: Principal
  /** Aborted when the tool's time runs out or the client cancels. */
  signal: AbortSignal
  requestId: string
  data: DataAccess
  /** The current time, injectable for tests. */
  now: () => Date
  /**
   * Set on the confirmed round of a call the user confirmed (mcp/confirm.ts):
   * the change they were shown (`confirmation`'s text). A tool whose
   * confirmation reads data writes only while that is still the change it makes.
   */
  confirmed?: string
}

export interface ToolDefinition<I extends z.ZodObject = z.ZodObject, O extends z.ZodObject = z.ZodObject> {
  name: string
  title: string
  description: string
  input: I
  output: O
  annotations: ToolAnnotations
  run(args: z.output<I>, ctx: ToolContext): Promise<z.output<O>>
  /**
   * For calls the policy says the user confirms (`confirm`): what `run` would
   * change, stated exactly for the person asked, from a read of the current
   * data. Throws a ToolError when `run` would refuse the call anyway (nobody
   * is asked). Without it the question names the tool and its arguments.
   */
  confirmation?(args: z.output<I>, ctx: ToolContext): Promise<string>
  /**
   * For paginated tools: called when the output cap dropped items from
   * `capped` (a cut copy of `output`); returns it with its continuation token
   * pointing right after the last item it still holds, so that no dropped
   * item is skipped by the next page.
   */
  resumeAfterCap?(capped: z.output<O>, output: z.output<O>, args: z.output<I>): z.output<O>
}

export function defineTool<I extends z.ZodObject, O extends z.ZodObject>(definition: ToolDefinition<I, O>): ToolDefinition<I, O> {
  return definition
}

/**
 * A failure the caller should see: its message goes to the client as a tool
 * error (`isError: true`). Anything else a tool throws is an internal error
 * and reaches the client only as "internal error (request <id>)".
 */
export class ToolError extends Error {
  override name = 'ToolError'
  constructor(
    message: string,
    readonly code: string = 'tool_error',
    /** 'error' marks an incident (audited as a failure and alerted), not a plain refusal. */
    readonly outcome: 'tool_error' | 'error' = 'tool_error',
  ) {
    super(message)
  }
}

export const notFound = (what: string, id: string) => new ToolError(`${what} ${id} not found`, 'not_found')

/**
 * The token lacks a claim this call is bound to (a declared tool's bound
 * parameter, or a row-scope rule of a table the call reads). `use` says what
 * the claim is for. Nothing is read or written.
 */
export const claimMissing = (claim: string, use: string) => new ToolError(missingClaimText(claim, use), 'claim_missing')
