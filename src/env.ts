// The Hono environment: bindings and the typed per-request variables each
// middleware sets for the ones after it.
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import type { RpcMessage } from './mcp/envelope.ts'
import type { Principal } from './auth/principal.ts'
import type { RequestScope } from './mcp/scope.ts'
import type { Commit } from './db/queries.ts'

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
    /** The MCP layer's view of the request; holds the tool report after the call. */
    scope: RequestScope
    /** How a tool's writes are committed: with their audit row (set by the audit step). */
    commit: Commit
  }
}
