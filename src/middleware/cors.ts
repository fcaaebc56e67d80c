// CORS for browser-based MCP clients (e.g. the MCP Inspector's web UI), only
// for origins the server accepts (its own and ALLOWED_ORIGINS). A preflight
// from any other origin is refused with 403, like the request itself would be.
// Responses expose WWW-Authenticate (so a browser client can follow the 401
// and 403 challenges) and X-Request-Id. No credentials mode: tokens travel in
// the Authorization header, never in cookies.
import { createMiddleware } from 'hono/factory'
import { normalizeOrigin } from '../config.ts'
import type { AppEnv } from '../env.ts'
import { AppError } from '../errors.ts'

const ALLOW_HEADERS = 'authorization, content-type, accept, mcp-protocol-version, mcp-method, mcp-name, mcp-session-id, last-event-id, dpop'
const EXPOSE_HEADERS = 'www-authenticate, x-request-id, mcp-protocol-version, mcp-session-id, retry-after, ratelimit, ratelimit-policy, dpop-nonce'

export const cors = () =>
  createMiddleware<AppEnv>(async function cors(c, next) {
    const origin = c.req.header('origin')
    const normalized = origin === undefined ? undefined : normalizeOrigin(origin)
    const allowed = normalized !== undefined && c.var.config.allowedOrigins.has(normalized)

    if (c.req.method === 'OPTIONS') {
      if (!allowed) throw new AppError('origin_forbidden')
      return c.body(null, 204, {
        'access-control-allow-origin': normalized,
        'access-control-allow-methods': 'POST',
        'access-control-allow-headers': ALLOW_HEADERS,
        'access-control-max-age': '600',
        vary: 'Origin',
      })
    }
    await next()
    if (allowed) {
      c.res = new Response(c.res.body, c.res)
      c.res.headers.set('access-control-allow-origin', normalized)
      c.res.headers.set('access-control-expose-headers', EXPOSE_HEADERS)
      c.res.headers.append('vary', 'Origin')
    }
  })
