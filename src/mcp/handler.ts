// The MCP SDK's HTTP entry, created once per isolate (on first use), serving one endpoint
// for both protocol eras from the same server factory:
//   2026-07-28 (stateless, per-request envelope) → createMcpHandler, JSON responses;
//   2025-03-26 … 2025-11-25 (initialize handshake, no session) → a stateless
//   streamable-HTTP transport per request with JSON responses, so clients get
//   application/json instead of a one-event SSE stream (we emit no progress).
// The per-request scope travels in `authInfo.extra`; the token itself is never
// handed to the SDK or the tools.
import { createMcpHandler, isLegacyRequest, WebStandardStreamableHTTPServerTransport, type AuthInfo } from '@modelcontextprotocol/server'
import { createLogger } from '../log.ts'
import { buildServer } from './server.ts'
import type { RequestScope } from './scope.ts'

const SCOPE_KEY = 'bastion.scope'
const log = createLogger({ component: 'mcp-sdk' })
const onerror = (error: Error) => log('warn', 'mcp_sdk_error', { error: `${error.name}: ${error.message}` })

function scopeOf(authInfo: AuthInfo | undefined): RequestScope {
  const scope = authInfo?.extra?.[SCOPE_KEY]
  if (!scope) throw new Error('MCP request reached the SDK without an authenticated scope')
  return scope as RequestScope
}

// Created on the first modern-era request, not at module scope: isolate
// startup does not pay for it (bench/run.ts measures startup CPU).
let modern: ReturnType<typeof createMcpHandler> | undefined
const modernHandler = () =>
  (modern ??= createMcpHandler(({ authInfo }) => buildServer(scopeOf(authInfo)), {
    legacy: 'reject',
    responseMode: 'json',
    onerror,
  }))

async function serveLegacy(request: Request, authInfo: AuthInfo, parsedBody: unknown): Promise<Response> {
  const server = await buildServer(scopeOf(authInfo))
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true })
  transport.onerror = onerror
  await server.connect(transport)
  try {
    return await transport.handleRequest(request, { authInfo, parsedBody })
  } finally {
    await transport.close().catch(() => {})
    await server.close().catch(() => {})
  }
}

export async function serveMcp(request: Request, scope: RequestScope, parsedBody: unknown): Promise<Response> {
  const authInfo: AuthInfo = {
    token: scope.principal.tokenId,
    clientId: scope.principal.clientId ?? scope.principal.sub,
    scopes: [...scope.principal.scopes],
    extra: { [SCOPE_KEY]: scope },
  }
  if (await isLegacyRequest(request, parsedBody)) return serveLegacy(request, authInfo, parsedBody)
  return modernHandler().fetch(request, { authInfo, parsedBody })
}
