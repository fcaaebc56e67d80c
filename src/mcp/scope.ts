// What one HTTP exchange hands to the MCP layer: who is calling, how to reach
// the data, where to log, and the audited call that records how it ended.
import type { AuditedCall } from '../audit/audited-call.ts'
import type { Principal } from '../auth/principal.ts'
import type { PendingWork } from '../limits/pending-work.ts'
import type { Logger } from '../log.ts'
import type { RowFilter } from '../policy/row-scope.ts'
import type { Confirmations } from './confirm.ts'

export interface RequestScope {
  requestId: string
  principal: Principal
  db: D1Database
  /** The caller's row scope (ROW_SCOPE): what every statement of its tools may read. */
  rows: RowFilter
  log: Logger
  /** The audited tools/call this request is; undefined for every other method, whose writes are refused. */
  call: AuditedCall | undefined
  /** Where a tool's unfinished work goes when its time runs out: the concurrency leases wait for it. */
  pending: PendingWork | undefined
  /** How calls the policy marks `confirm` are confirmed; undefined when CONFIRM_STATE_KEY is not set (they are refused). */
  confirm: Confirmations | undefined
}

/** 'modern': a 2026-07-28 request (one round per request); 'legacy': a 2025-era request (mcp/handler.ts). */
export type Era = 'modern' | 'legacy'
