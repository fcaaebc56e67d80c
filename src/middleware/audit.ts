// Audit: wraps everything after authentication for tools/call, so every
// outcome of an authenticated caller is recorded — success, tool error,
// invalid input, 403 denial, 429, timeout, internal error — exactly once.
//
//   * Each caller's rows go to one chain: chainOf(sub, AUDIT_CHAINS).
//   * The call's AuditedCall (src/audit/audited-call.ts) owns its one row:
//     a mutation commits with it, the tool boundary finishes it, and a call
//     the tool boundary never reported on is finished here from the HTTP
//     result. The first of these writes; the others are no-ops.
// Unauthenticated requests never reach this step: they are logged by the
// Worker, not stored, so an anonymous flood cannot become a D1 write flood.
import { createMiddleware } from 'hono/factory'
import { AuditedCall } from '../audit/audited-call.ts'
import { chainOf } from '../audit/chains.ts'
import type { AppEnv } from '../env.ts'

export const audit = () =>
  createMiddleware<AppEnv>(async function audit(c, next) {
    const { rpc, principal } = c.var
    if (rpc.method !== 'tools/call') return next()

    const call = new AuditedCall({
      facts: {
        requestId: c.var.requestId,
        startedAt: c.var.startedAt,
        principal,
        method: rpc.method,
        toolName: rpc.toolName,
        toolArguments: rpc.toolArguments,
        client: rpc.client,
      },
      chain: chainOf(principal.sub, c.var.config.auditChains),
      env: c.env,
      log: c.var.log,
      config: c.var.config,
      waitUntil: (promise) => c.executionCtx.waitUntil(promise),
    })
    c.set('call', call)
    await next()
    // a call the tool boundary did not record: its row is durable before the answer
    await call.finishFromHttp(c.res.status, c.error)
  })
