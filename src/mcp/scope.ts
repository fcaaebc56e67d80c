// What one HTTP exchange hands to the MCP layer: who is calling, how to reach
// the data, where to log, and a place for the tool boundary to record what
// happened (read by the audit layer after the response is built).
import type { Principal } from '../auth/principal.ts'
import type { Commit } from '../db/queries.ts'
import type { Logger } from '../log.ts'

export type ToolOutcome = 'ok' | 'tool_error' | 'invalid_input' | 'timeout' | 'error'

export interface ToolReport {
  outcome: ToolOutcome
  /** Stable machine code for failures (ToolError.code, "timeout", "internal"). */
  errorCode: string | undefined
  /** The JSON text of what the tool returned (structured content), when it returned. */
  outputJson: string | undefined
}

export interface RequestScope {
  requestId: string
  principal: Principal
  db: D1Database
  log: Logger
  /** How writes are committed: plain batch, or batch with the audit row. */
  commit: Commit
  /** Filled by the tool boundary when a tool ran (or was refused by it). */
  report: ToolReport | undefined
}
