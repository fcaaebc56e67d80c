// mcp-bastion: composition only. Read it as the request's path (DESIGN.md §1),
// with two deliberate moves: authentication comes before the envelope is
// parsed (an anonymous caller gets 401 and learns nothing from the parser),
// and the header checks come after audit (a refused tools/call is recorded).
import { Hono } from 'hono'
import type { AppEnv } from './env.ts'
import { AppError, errorResponse } from './errors.ts'
import { protectedResourceMetadata } from './auth/metadata.ts'
import { requestId } from './middleware/request-id.ts'
import { loadConfig } from './middleware/config.ts'
import { cors } from './middleware/cors.ts'
import { checkOrigin } from './middleware/origin.ts'
import { bodyLimit } from './middleware/body-limit.ts'
import { checkRequest, parseRpc } from './middleware/rpc.ts'
import { authenticate } from './middleware/authenticate.ts'
import { audit } from './middleware/audit.ts'
import { authorize } from './middleware/authorize.ts'
import { limits } from './middleware/limits.ts'
import { mcp } from './middleware/mcp.ts'
import { scheduled } from './scheduled.ts'

const app = new Hono<AppEnv>()

app.use('*', requestId(), loadConfig())

app.get('/healthz', (c) => c.json({ ok: true }))
// Public metadata: readable from any origin (no credentials involved).
for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
  app.get(path, (c) => c.json(protectedResourceMetadata(c.var.config), 200, { 'access-control-allow-origin': '*' }))
}

app.use('/mcp', cors())

app.post(
  '/mcp',
  checkOrigin(),
  bodyLimit(),
  authenticate(),
  parseRpc(),
  audit(),
  checkRequest(),
  authorize(),
  limits(),
  mcp(),
)
app.on(['GET', 'DELETE', 'PUT', 'PATCH', 'HEAD'], '/mcp', () => {
  throw new AppError('method_not_allowed', { headers: { allow: 'POST' } })
})

app.notFound((c) => c.json({ error: 'not found' }, 404))

app.onError((error, c) => {
  const id = c.var.requestId ?? crypto.randomUUID()
  if (error instanceof AppError) {
    if (error.status >= 500) c.var.log?.('error', 'request_failed', { kind: error.kind, detail: error.detail })
    return errorResponse(error, id)
  }
  c.var.log?.('error', 'unhandled', { error: error instanceof Error ? `${error.name}: ${error.message}` : String(error), stack: error instanceof Error ? error.stack : undefined })
  return errorResponse(new AppError('internal'), id)
})

export { LimiterObject } from './limits/embedded.ts'
export { DpopReplay } from './auth/dpop-replay.ts'
export { AuditSequencer } from './audit/sequencer.ts'
export { ElicitationRendezvous } from './mcp/rendezvous.ts'

export default { fetch: app.fetch, scheduled } satisfies ExportedHandler<Env>
