// The MCP SDK's HTTP entry, created once per isolate (on first use), serving one endpoint
// for both protocol eras from the same server factory:
//   2026-07-28 (stateless, per-request envelope) → createMcpHandler, JSON responses;
//   2025-03-26 … 2025-11-25 (initialize handshake, no session) → a stateless
//   streamable-HTTP transport per request with JSON responses, so clients get
//   application/json instead of a one-event SSE stream (we emit no progress).
// The per-request scope travels in `authInfo.extra`; the token itself is never
// handed to the SDK or the tools. A 2025-era tools/call that asks its user to
// confirm it is served with a session transport and an SSE answer instead
// (mcp/elicitation.ts).
import { createMcpHandler, isLegacyRequest, WebStandardStreamableHTTPServerTransport, type AuthInfo } from '@modelcontextprotocol/server'
import { createLogger } from '../log.ts'
import { needsConfirmation } from '../policy/confirm.ts'
import { POLICY } from '../policy/policy.ts'
import { deliverAnswer, isElicitationAnswer, mintSession, readSession, serveAsking } from './elicitation.ts'
import type { RpcMessage } from './envelope.ts'
import { buildServer, serverExtension } from './server.ts'
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
  (modern ??= createMcpHandler(({ authInfo }) => buildServer(scopeOf(authInfo), 'modern'), {
    legacy: 'reject',
    responseMode: serverExtension()?.streamNotifications ? 'auto' : 'json',
    onerror,
  }))

/** Whether a JSON answer carries a JSON-RPC result (not an error). */
async function succeeded(response: Response): Promise<boolean> {
  if (response.status !== 200 || !response.headers.get('content-type')?.startsWith('application/json')) return false
  try {
    const body: unknown = JSON.parse(await response.clone().text())
    return typeof body === 'object' && body !== null && 'result' in body
  } catch {
    return false
  }
}

/** A tools/call this caller may make that the policy says its user confirms first. */
function asksUser(scope: RequestScope, rpc: RpcMessage): boolean {
  const settings = rpc.method === 'tools/call' && rpc.toolName !== undefined ? POLICY.tools.get(rpc.toolName) : undefined
  return settings !== undefined && scope.principal.scopes.has(settings.scope) && needsConfirmation(settings.confirm, rpc.toolArguments)
}

async function serveLegacy(request: Request, scope: RequestScope, authInfo: AuthInfo, rpc: RpcMessage): Promise<Response> {
  const confirm = scope.confirm
  if (confirm && asksUser(scope, rpc)) {
    const sessionId = request.headers.get('mcp-session-id')
    const session = await readSession(confirm, sessionId, scope.principal.sub)
    if (session) return serveAsking(request, authInfo, rpc, scope, confirm, session, sessionId!)
  }
  const parsedBody = rpc.raw
  const server = await buildServer(scope, 'legacy')
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true })
  transport.onerror = onerror
  await server.connect(transport)
  let response: Response
  try {
    response = await transport.handleRequest(request, { authInfo, parsedBody })
  } finally {
    await transport.close().catch(() => {})
    await server.close().catch(() => {})
  }
  // a client that can ask its user gets a session record at initialize (mcp/elicitation.ts)
  if (confirm && rpc.kind === 'request' && rpc.method === 'initialize' && (await succeeded(response))) {
    const sessionId = await mintSession(confirm, scope.principal.sub, rpc.params)
    if (sessionId !== undefined) {
      response = new Response(response.body, response)
      response.headers.set('mcp-session-id', sessionId)
    }
  }
  return response
}

export async function serveMcp(request: Request, scope: RequestScope, rpc: RpcMessage): Promise<Response> {
  const parsedBody = rpc.raw
  const authInfo: AuthInfo = {
    token: scope.principal.tokenId,
    clientId: scope.principal.clientId ?? scope.principal.sub,
    scopes: [...scope.principal.scopes],
    extra: { [SCOPE_KEY]: scope },
  }
  // a 2025-era client's answer to a confirmation question goes to the request that asked
  if (scope.confirm && isElicitationAnswer(rpc)) return deliverAnswer(scope.confirm, scope, rpc)
  if (await isLegacyRequest(request, parsedBody)) return serveLegacy(request, scope, authInfo, rpc)
  return modernHandler().fetch(request, { authInfo, parsedBody })
}
