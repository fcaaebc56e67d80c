// DNS-rebinding and cross-site defence (MCP transport spec: servers MUST
// validate Origin). A request that carries an Origin header is refused with
// 403 unless it is the server's own origin (that of AUTH_AUDIENCE) or is
// listed in ALLOWED_ORIGINS; with the list empty, every cross-origin
// browser request is refused. Requests without Origin
// (server-side agents, CLIs) pass: they are not browser-driven.
import { createMiddleware } from 'hono/factory'
import { normalizeOrigin } from '../config.ts'
import type { AppEnv } from '../env.ts'
import { AppError } from '../errors.ts'

export const checkOrigin = () =>
  createMiddleware<AppEnv>(async function checkOrigin(c, next) {
    const origin = c.req.header('origin')
    if (origin !== undefined) {
      const normalized = normalizeOrigin(origin)
      if (normalized === undefined || !c.var.config.allowedOrigins.has(normalized)) {
        c.var.log('warn', 'origin_refused', { origin: origin.slice(0, 200) })
        throw new AppError('origin_forbidden')
      }
    }
    await next()
  })
