// Parses the JSON-RPC envelope once (mcp/envelope.ts) and checks what can be
// checked before the MCP layer: media type, JSON, JSON-RPC shape, and the
// Mcp-Method / Mcp-Name headers against the body (for both protocol eras). Failures are 400 (415 for a wrong
// Content-Type) with the matching JSON-RPC error code.
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

export const parseRpc = () =>
  createMiddleware<AppEnv>(async function parseRpc(c, next) {
    const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase()
    if (type !== 'application/json') throw new AppError('unsupported_media_type')
    const parsed = parseEnvelope(c.var.body)
    if (!parsed.ok) throw new AppError(parsed.kind, { message: parsed.message, rpcId: parsed.id })
    const message = parsed.message
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
    c.set('rpc', message)
    await next()
  })
