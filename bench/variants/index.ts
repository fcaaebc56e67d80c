// Benchmark-only Worker entry (bench/run.ts): mcp-bastion's own middleware
// from src/, composed in src/index.ts's order, with some controls left out,
// so each control's cost shows as a row against the baseline. Which ones run
// comes from BENCH_CONTROLS, a setting read ONLY here: the production entry
// (src/index.ts) has no such switch and composes every control
// unconditionally, so no deployment can switch a control off by
// configuration. Only `npm run bench` starts this entry (bench/variants/
// wrangler.toml); never deploy it.
//
//   BENCH_CONTROLS  comma-separated subset of: policy, limits, audit
//                   (empty: authentication only — origin check, body cap,
//                   token verification, JSON-RPC checks, the MCP layer)
//
// It also counts the Durable Object requests the Worker makes (every method
// called on a LIMITER or AUDIT_SEQUENCER stub) and the tools/call requests it
// served; GET /__bench/counts returns them since the isolate started.
import { Hono, type MiddlewareHandler } from 'hono'
import type { AppEnv } from '../../src/env.ts'
import { AppError, errorResponse } from '../../src/errors.ts'
import { requestId } from '../../src/middleware/request-id.ts'
import { loadConfig } from '../../src/middleware/config.ts'
import { cors } from '../../src/middleware/cors.ts'
import { checkOrigin } from '../../src/middleware/origin.ts'
import { bodyLimit } from '../../src/middleware/body-limit.ts'
import { checkRequest, parseRpc } from '../../src/middleware/rpc.ts'
import { authenticate } from '../../src/middleware/authenticate.ts'
import { audit } from '../../src/middleware/audit.ts'
import { authorize } from '../../src/middleware/authorize.ts'
import { limits } from '../../src/middleware/limits.ts'
import { mcp } from '../../src/middleware/mcp.ts'

export const CONTROLS = ['policy', 'limits', 'audit'] as const
export type Control = (typeof CONTROLS)[number]

export function parseControls(raw: string | undefined): Set<Control> {
  const picked = new Set<Control>()
  for (const word of (raw ?? '').split(',').map((w) => w.trim()).filter(Boolean)) {
    if (!(CONTROLS as readonly string[]).includes(word)) throw new Error(`BENCH_CONTROLS: unknown control ${word} (known: ${CONTROLS.join(', ')})`)
    picked.add(word as Control)
  }
  return picked
}

function build(controls: Set<Control>): Hono<AppEnv> {
  const app = new Hono<AppEnv>()
  app.use('*', requestId(), loadConfig())
  app.use('/mcp', cors())
  // Same order as src/index.ts; a control left out is simply not in the chain.
  const chain: MiddlewareHandler<AppEnv>[] = [checkOrigin(), bodyLimit(), authenticate(), parseRpc()]
  if (controls.has('audit')) chain.push(audit())
  chain.push(checkRequest())
  if (controls.has('policy')) chain.push(authorize())
  if (controls.has('limits')) chain.push(limits())
  // Handlers registered on one route run in registration order, each calling next().
  for (const step of chain) app.post('/mcp', step)
  app.post('/mcp', mcp())
  app.notFound((c) => c.json({ error: 'not found' }, 404))
  app.onError((error, c) => {
    const id = c.var.requestId ?? crypto.randomUUID()
    if (error instanceof AppError) return errorResponse(error, id)
    c.var.log?.('error', 'unhandled', { error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) })
    return errorResponse(new AppError('internal'), id)
  })
  return app
}

type BenchEnv = Env & { BENCH_CONTROLS?: string }
let app: Hono<AppEnv> | undefined

/** Per isolate: Durable Object requests by binding, and /mcp requests. */
const counts = { calls: 0, LIMITER: 0, AUDIT_SEQUENCER: 0 }

/** `ns` with every stub method call counted under `name`. */
function counted<T extends object>(ns: T, name: 'LIMITER' | 'AUDIT_SEQUENCER'): T {
  return new Proxy(ns, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown
      if (typeof value !== 'function') return value
      if (property !== 'get') return (value as (...a: unknown[]) => unknown).bind(target)
      return (...args: unknown[]) => {
        const stub = Reflect.apply(value as (...a: unknown[]) => object, target, args)
        return new Proxy(stub, {
          get(s, p) {
            const member = Reflect.get(s, p, s) as unknown
            if (typeof member !== 'function' || typeof p !== 'string' || p === 'fetch' || p === 'connect') return member
            return (...a: unknown[]) => {
              counts[name] += 1
              // Reflect.apply: an RPC method's own `.apply` would be a remote call named "apply"
              return Reflect.apply(member as (...x: unknown[]) => unknown, s, a)
            }
          },
        })
      }
    },
  })
}

/** One wrapped env per binding object: the limiter's and the audit writer's per-isolate lanes key on the namespace. */
const wrapped = new WeakMap<object, BenchEnv>()
function countedEnv(env: BenchEnv): BenchEnv {
  let e = wrapped.get(env.LIMITER)
  if (e === undefined) {
    e = { ...env, LIMITER: counted(env.LIMITER, 'LIMITER'), AUDIT_SEQUENCER: counted(env.AUDIT_SEQUENCER, 'AUDIT_SEQUENCER') }
    wrapped.set(env.LIMITER, e)
  }
  return e
}

export { LimiterObject } from '../../src/limits/embedded.ts'
export { DpopReplay } from '../../src/auth/dpop-replay.ts'
export { AuditSequencer } from '../../src/audit/sequencer.ts'
export default {
  fetch(request, env, ctx) {
    const url = new URL(request.url)
    if (url.pathname === '/__bench/counts') return Response.json(counts)
    if (url.pathname === '/mcp' && request.method === 'POST') counts.calls += 1
    app ??= build(parseControls(env.BENCH_CONTROLS))
    return app.fetch(request, countedEnv(env), ctx)
  },
} satisfies ExportedHandler<BenchEnv>
