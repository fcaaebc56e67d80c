// Confirmation questions on 2025-era requests (2025-06-18 … 2025-11-25),
// where the server asks the client with an `elicitation/create` request on
// the tools/call's own SSE stream and the client answers with a POST of its
// own. Per-request serving keeps no connection state, so three things stand
// in for it:
//
//   the session  At `initialize`, a client that declares form elicitation
//                gets an Mcp-Session-Id: a signed (HMAC, CONFIRM_STATE_KEY)
//                record of its subject, protocol version and elicitation
//                capability. It is not a credential (the bearer token is);
//                it only tells later requests what the client can do.
//   the stream   A tools/call the policy says the user confirms, carrying a
//                valid session of the same subject, is served by a
//                per-request session transport: initialized in process from
//                the session record, answering with an SSE stream, so the
//                SDK's shim can ask and re-enter the handler (mcp/confirm.ts)
//                in the same request.
//   the answer   The question's JSON-RPC id is a fresh `bastion-elicit-<uuid>`;
//                the client's POST carrying that id is handed to the
//                ElicitationRendezvous object of that name (mcp/rendezvous.ts),
//                which the asking request waits on, wherever each runs.
//
// Without a session (a client that did not declare elicitation, or one that
// dropped the header) the call is served statelessly and the tool's
// confirmation step refuses it, naming the need.
import { WebStandardStreamableHTTPServerTransport, type AuthInfo, type ClientCapabilities, type JSONRPCMessage } from '@modelcontextprotocol/server'
import { canElicitForm, type Confirmations } from './confirm.ts'
import { buildServer } from './server.ts'
import type { RpcMessage } from './envelope.ts'
import type { Answer } from './rendezvous.ts'
import type { RequestScope } from './scope.ts'

const ELICIT_ID_PREFIX = 'bastion-elicit-'
/** Time past the request state's TTL after which an unanswered question is given up. */
const GRACE_MS = 1000

/** What an Mcp-Session-Id records. */
export interface LegacySession {
  sub: string
  protocolVersion: string
  elicitation: Record<string, unknown>
}

/** The session id for the client of an initialize request (`params`), when it declares form elicitation. */
export async function mintSession(confirm: Confirmations, sub: string, params: Record<string, unknown> | undefined): Promise<string | undefined> {
  const capabilities = params?.['capabilities'] as ClientCapabilities | undefined
  const version = params?.['protocolVersion']
  if (!canElicitForm(capabilities) || typeof version !== 'string') return undefined
  // the modes only: what the client declared beyond them is not needed and would only lengthen the header
  const { form, url } = capabilities!.elicitation as { form?: unknown; url?: unknown }
  const elicitation = { ...(form === undefined ? {} : { form: {} }), ...(url === undefined ? {} : { url: {} }) }
  return confirm.sessions.mint({ sub, protocolVersion: version.slice(0, 32), elicitation })
}

/** The session a request's Mcp-Session-Id records, if it verifies and is `sub`'s. */
export async function readSession(confirm: Confirmations, header: string | null, sub: string): Promise<LegacySession | undefined> {
  if (header === null || header.length > 2048) return undefined
  try {
    // no `bind`: the codec never reads the context
    const session = await confirm.sessions.verify(header, undefined as never)
    return session.sub === sub ? session : undefined
  } catch {
    return undefined
  }
}

/** Whether a message is a client's answer to one of our questions. */
export function isElicitationAnswer(rpc: RpcMessage): rpc is RpcMessage & { id: string } {
  return rpc.kind === 'response' && typeof rpc.id === 'string' && rpc.id.startsWith(ELICIT_ID_PREFIX)
}

/** Hands an answer to the request waiting for it; 202 either way (the spec's answer to a response). */
export async function deliverAnswer(confirm: Confirmations, scope: RequestScope, rpc: RpcMessage & { id: string }): Promise<Response> {
  const rendezvous = confirm.rendezvous.get(confirm.rendezvous.idFromName(rpc.id))
  const taken = await rendezvous.deliver(scope.principal.sub, rpc.raw as Answer)
  if (!taken) scope.log('warn', 'elicitation_answer_unmatched', { id: rpc.id.slice(0, 64) })
  return new Response(null, { status: 202 })
}

/**
 * Serves one 2025-era tools/call that will ask its user: a session transport
 * initialized from `session`, an SSE answer, questions routed through the
 * rendezvous. The request's audited call and concurrency leases are held
 * until the stream's last message.
 */
export async function serveAsking(request: Request, authInfo: AuthInfo, rpc: RpcMessage, scope: RequestScope, confirm: Confirmations, session: LegacySession, sessionId: string): Promise<Response> {
  const capabilities = { elicitation: session.elicitation } as ClientCapabilities
  const waitMs = confirm.ttlSeconds * 1000 + GRACE_MS
  const server = await buildServer(scope, 'legacy', capabilities, waitMs + GRACE_MS)
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: () => sessionId, enableJsonResponse: false })
  await server.connect(transport)
  const initialized = await transport.handleRequest(
    new Request(request.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: `${ELICIT_ID_PREFIX}init`, method: 'initialize', params: { protocolVersion: session.protocolVersion, capabilities, clientInfo: { name: 'session', version: '0' } } }),
    }),
    { authInfo },
  )
  await initialized.text()

  const callId = rpc.id
  let finished!: () => void
  const done = new Promise<void>((resolve) => (finished = resolve))
  // A question the client cannot answer any more (it left, or the rendezvous
  // failed) is answered "cancel" at once, so the handler's last round runs and
  // writes the call's row while the request is still alive.
  const unanswered = new Map<string | number, () => void>()
  const cancelAll = () => {
    for (const cancel of [...unanswered.values()]) cancel()
  }
  const send = transport.send.bind(transport)
  transport.send = async (message: JSONRPCMessage, options) => {
    if ('method' in message && 'id' in message) {
      // a question: a fresh id names its rendezvous; the answer comes back under the SDK's own id
      const own = message.id
      const id = `${ELICIT_ID_PREFIX}${crypto.randomUUID()}`
      const settle = (reply: JSONRPCMessage) => {
        if (!unanswered.delete(own)) return
        transport.onmessage?.(reply)
      }
      const cancelled: JSONRPCMessage = { jsonrpc: '2.0', id: own, result: { action: 'cancel' } }
      unanswered.set(own, () => settle(cancelled))
      confirm.rendezvous.get(confirm.rendezvous.idFromName(id)).wait(scope.principal.sub, waitMs).then(
        (reply) => settle(reply === null ? cancelled : ({ ...(reply as object), id: own } as unknown as JSONRPCMessage)),
        (error: unknown) => {
          scope.log('error', 'elicitation_wait_failed', { error: error instanceof Error ? error.message : String(error) })
          settle(cancelled)
        },
      )
      return send({ ...message, id }, options)
    }
    try {
      return await send(message, options)
    } finally {
      if ('id' in message && message.id === callId && !('method' in message)) finished()
    }
  }
  scope.pending?.add(done)
  scope.call?.answerStreams(done)
  void done.finally(async () => {
    await transport.close().catch(() => {})
    await server.close().catch(() => {})
  })
  // the last bound on everything the call holds, should the SDK never answer
  const stop = setTimeout(finished, waitMs + 10 * GRACE_MS)
  void done.then(() => clearTimeout(stop))
  const response = await transport.handleRequest(request, { authInfo, parsedBody: rpc.raw })
  if (!response.body || !response.headers.get('content-type')?.startsWith('text/event-stream')) {
    // refused before the call ran (media type, protocol version): nothing streams
    finished()
    return response
  }
  const reader = response.body.getReader()
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done: ended } = await reader.read()
      if (ended) controller.close()
      else controller.enqueue(value)
    },
    async cancel(reason) {
      // the client left: no answer is coming
      cancelAll()
      await reader.cancel(reason)
    },
  })
  return new Response(body, response)
}
