// Parses the JSON-RPC envelope once (mcp/envelope.ts) and checks what can be
// checked before authentication: media type, JSON, JSON-RPC shape, and the
// Mcp-Method header against the body. Failures are 400 (415 for a wrong
// Content-Type) with the matching JSON-RPC error code.
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../env.ts'
import { AppError } from '../errors.ts'
import { parseEnvelope } from '../mcp/envelope.ts'

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
    c.set('rpc', message)
    await next()
  })
