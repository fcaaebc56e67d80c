// Authorization: one decision per tools/call, from the policy, before the
// tool runs and before any limit is charged. A known tool the caller's
// effective scopes do not cover → 403 with the RFC 6750 step-up challenge
// naming the exact scope to request. An unknown tool is left to the MCP
// layer, which answers JSON-RPC "invalid params" (the tool is not registered
// for anyone, so nothing leaks). Other methods need only authentication:
// tools/list is filtered per caller by the server factory, and so are
// resources/list and resources/read (mcp/resources.ts registers only the
// resources the caller may see; any other URI is "Resource not found").
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../env.ts'
import { AppError, authParam } from '../errors.ts'
import { decideTool } from '../policy/decide.ts'
import { POLICY } from '../policy/policy.ts'

export const authorize = () =>
  createMiddleware<AppEnv>(async function authorize(c, next) {
    const { rpc, principal, config } = c.var
    if (rpc.method === 'tools/call' && rpc.toolName !== undefined) {
      const decision = decideTool(POLICY, principal.scopes, rpc.toolName)
      if (!decision.allow && decision.reason === 'insufficient_scope') {
        c.var.log('info', 'tool_denied', { sub: principal.sub, tool: rpc.toolName, scope: decision.scope })
        throw new AppError('insufficient_scope', {
          message: `insufficient scope: ${rpc.toolName} requires scope ${decision.scope}`,
          rpcId: rpc.id,
          data: { scope: decision.scope, tool: rpc.toolName },
          headers: {
            'www-authenticate': `Bearer error="insufficient_scope", scope=${authParam(decision.scope)}, resource_metadata=${authParam(config.resourceMetadataUrl)}, error_description=${authParam(`${rpc.toolName} requires ${decision.scope}`)}`,
          },
        })
      }
    }
    await next()
  })
