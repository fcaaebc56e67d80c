// The Hono environment: bindings and the typed per-request variables each
// middleware sets for the ones after it.
import type { AuditedCall } from './audit/audited-call.ts'
import type { Config } from './config.ts'
import type { PendingWork } from './limits/pending-work.ts'
import type { Logger } from './log.ts'
import type { RpcMessage } from './mcp/envelope.ts'
import type { Principal } from './auth/principal.ts'

export interface AppEnv {
  Bindings: Env
  Variables: {
    /** X-Request-Id of this exchange. */
    requestId: string
    /** When the request arrived (ms since epoch). */
    startedAt: number
    log: Logger
    config: Config
    /** The request body as text, read under the byte cap. */
    body: string
    /** The parsed JSON-RPC message. */
    rpc: RpcMessage
    principal: Principal
    /** The audited tools/call (set by the audit step for tools/call only). */
    call: AuditedCall
    /** Work that holds the request's concurrency leases past its response (set by the limits step). */
    pending: PendingWork
  }
}
