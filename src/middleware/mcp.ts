// Hands the authenticated, authorized request to the MCP SDK.
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../env.ts'
import { serveMcp } from '../mcp/handler.ts'
import type { RequestScope } from '../mcp/scope.ts'
import { rowFilterFor } from '../policy/row-scope.ts'
import { confirmations } from '../mcp/confirm.ts'

export const mcp = () =>
  createMiddleware<AppEnv>(async function mcp(c) {
    const scope: RequestScope = {
      requestId: c.var.requestId,
      principal: c.var.principal,
      db: c.env.DB,
      rows: rowFilterFor(c.var.config.rowScope, c.var.principal),
      log: c.var.log,
      // Set by the audit step for tools/call; nothing else runs tools, so a
      // write without it is refused rather than committed unaudited.
      call: c.get('call'),
      pending: c.get('pending'),
      confirm: confirmations(c.var.config.confirm, c.env),
    }
    return serveMcp(c.req.raw, scope, c.var.rpc)
  })
