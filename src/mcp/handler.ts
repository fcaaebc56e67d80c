// The MCP SDK's HTTP entry, created once per isolate. It serves the
// 2026-07-28 stateless protocol and, through the SDK's stateless legacy
// fallback, 2025-03-26 … 2025-11-25 clients from the same endpoint and the
// same server factory. The per-request scope travels in `authInfo.extra`;
// the token itself is never handed to the SDK or the tools.
import { createMcpHandler, type AuthInfo } from '@modelcontextprotocol/server'
import { createLogger } from '../log.ts'
import { buildServer } from './server.ts'
import type { RequestScope } from './scope.ts'

const SCOPE_KEY = 'bastion.scope'
const log = createLogger({ component: 'mcp-sdk' })

function scopeOf(authInfo: AuthInfo | undefined): RequestScope {
  const scope = authInfo?.extra?.[SCOPE_KEY]
  if (!scope) throw new Error('MCP request reached the SDK without an authenticated scope')
  return scope as RequestScope
}

const handler = createMcpHandler(({ authInfo }) => buildServer(scopeOf(authInfo)), {
  legacy: 'stateless',
  onerror: (error) => log('warn', 'mcp_sdk_error', { error: `${error.name}: ${error.message}` }),
})

export function serveMcp(request: Request, scope: RequestScope, parsedBody: unknown): Promise<Response> {
  const authInfo: AuthInfo = {
    token: scope.principal.tokenId,
    clientId: scope.principal.clientId ?? scope.principal.sub,
    scopes: [...scope.principal.scopes],
    extra: { [SCOPE_KEY]: scope },
  }
  return handler.fetch(request, { authInfo, parsedBody })
}
