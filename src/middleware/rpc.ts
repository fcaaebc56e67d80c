// The JSON-RPC envelope, in two steps around the audit step:
//   parseRpc      parses the body once (mcp/envelope.ts): not JSON → 400
//                 -32700, not a JSON-RPC 2.0 object → 400 -32600;
//   checkRequest  (after audit, so a refused tools/call is recorded) checks
//                 the media type (415), the Mcp-Method / Mcp-Name headers
//                 against the body (400 -32020, both protocol eras), and
//                 refuses methods this server does not serve.
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../env.ts'
import { AppError } from '../errors.ts'
import { parseEnvelope, type RpcMessage } from '../mcp/envelope.ts'

/** The body value an Mcp-Name header must mirror (SEP-2243), if any. */
function nameSource(message: RpcMessage): string | undefined {
  const p = message.params
  if (message.method === 'tools/call' || message.method === 'prompts/get') return typeof p?.['name'] === 'string' ? p['name'] : undefined
  if (message.method === 'resources/read') return typeof p?.['uri'] === 'string' ? p['uri'] : undefined
  return undefined
}

/** Mcp-Name values may be sent as `=?base64?<b64 of UTF-8>?=`; undefined when that is malformed. */
export function decodeNameHeader(value: string): string | undefined {
  const m = /^=\?base64\?([A-Za-z0-9+/=]*)\?=$/.exec(value)
  if (!m) return value
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Uint8Array.from(atob(m[1]!), (ch) => ch.charCodeAt(0)))
  } catch {
    return undefined
  }
}

/**
 * Methods refused outright. `subscriptions/listen` (2026-07-28) would hold an
 * SSE stream open per call for notifications this server never sends
 * (its tool list is fixed per token: listChanged is false).
 */
const REFUSED_METHODS = new Set(['subscriptions/listen'])

export const parseRpc = () =>
  createMiddleware<AppEnv>(async function parseRpc(c, next) {
    const parsed = parseEnvelope(c.var.body)
    if (!parsed.ok) throw new AppError(parsed.kind, { message: parsed.message, rpcId: parsed.id })
    c.set('rpc', parsed.message)
    await next()
  })

export const checkRequest = () =>
  createMiddleware<AppEnv>(async function checkRequest(c, next) {
    const message = c.var.rpc
    const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase()
    if (type !== 'application/json') throw new AppError('unsupported_media_type', { rpcId: message.id })
    if (message.method !== undefined && REFUSED_METHODS.has(message.method)) {
      throw new AppError('method_not_found', { message: `method ${message.method} is not supported by this server`, rpcId: message.id })
    }
    const methodHeader = c.req.header('mcp-method')
    if (methodHeader !== undefined && message.method !== undefined && methodHeader !== message.method) {
      throw new AppError('bad_header', {
        message: `Mcp-Method header "${methodHeader.slice(0, 64)}" does not match the body's method "${message.method}"`,
        rpcId: message.id,
      })
    }
    const nameHeader = c.req.header('mcp-name')
    const bodyName = nameSource(message)
    if (nameHeader !== undefined && bodyName !== undefined && decodeNameHeader(nameHeader) !== bodyName) {
      throw new AppError('bad_header', {
        message: `Mcp-Name header does not match the body's ${message.method === 'resources/read' ? 'params.uri' : 'params.name'}`,
        rpcId: message.id,
      })
    }
    await next()
  })
