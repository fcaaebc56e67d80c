// Benchmark baseline (bench/run.ts): the cheapest honest MCP server for the
// same work as mcp-bastion's get_customer — the same SDK in stateless mode,
// JSON responses, the same shared JSON-schema validator and zod schemas, the
// same SQL over the same D1 data — and none of the controls. The difference
// between this row and mcp-bastion's is what the controls cost.
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server'
import { CfWorkerJsonSchemaValidator } from '@modelcontextprotocol/server/validators/cf-worker'
// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { Customer, CustomerId } from '../../src/tools/schemas.ts'

interface BaselineEnv {
  DB: D1Database
}

const validator = new CfWorkerJsonSchemaValidator()

function buildServer(db: D1Database): McpServer {
  const server = new McpServer({ name: 'bench-baseline', version: '0.0.0' }, { capabilities: { tools: { listChanged: false } }, jsonSchemaValidator: validator })
  server.registerTool(
    'get_customer',
    {
      title: 'Get customer',
      description: 'Retrieve one customer record by its id.',
      inputSchema: z.object({ customerId: CustomerId }).strict(),
      outputSchema: z.object({ customer: Customer }),
      annotations: { readOnlyHint: true },
    },
    async ({ customerId }) => {
      const customer = await db
        .prepare('SELECT id, name, company, email, phone, address, tier, created_at FROM customers WHERE id = ?1')
        .bind(customerId)
        .first<z.infer<typeof Customer>>()
      if (!customer) return { isError: true, content: [{ type: 'text', text: `customer ${customerId} not found` }] }
      const structuredContent = { customer }
      return { structuredContent, content: [{ type: 'text', text: JSON.stringify(structuredContent) }] }
    },
  )
  return server
}

let handler: ReturnType<typeof createMcpHandler> | undefined

export default {
  fetch(request: Request, env: BaselineEnv): Promise<Response> | Response {
    const url = new URL(request.url)
    if (url.pathname === '/healthz') return Response.json({ ok: true })
    if (url.pathname !== '/mcp') return Response.json({ error: 'not found' }, { status: 404 })
    handler ??= createMcpHandler(() => buildServer(env.DB), { legacy: 'stateless', responseMode: 'json' })
    return handler.fetch(request)
  },
} satisfies ExportedHandler<BaselineEnv>
