// Gives every exchange an id, a logger carrying it, and the X-Request-Id
// response header. The id is always ours: a client-sent X-Request-Id is not
// trusted (it would let a caller forge log correlation).
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../env.ts'
import { createLogger } from '../log.ts'
import { configFor } from './config.ts'

export const requestId = () =>
  createMiddleware<AppEnv>(async function requestId(c, next) {
    const id = crypto.randomUUID()
    c.set('requestId', id)
    c.set('startedAt', Date.now())
    // LOG_LEVEL from the (cached) configuration; an invalid configuration
    // still logs at info so its config_invalid line is written.
    const config = configFor(c.env)
    c.set('log', createLogger({ requestId: id }, config.ok ? config.config.logLevel : 'info'))
    await next()
    c.header('x-request-id', id)
  })
