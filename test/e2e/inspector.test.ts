// The MCP Inspector's CLI (@modelcontextprotocol/inspector-cli 1.0.3) against
// the real server, the way the README tells people to connect it:
//
//   mcp-inspector-cli --cli <url>/mcp --transport http \
//     --header "Authorization: Bearer <token>" --method tools/list
//
// It prints the JSON-RPC result on stdout and exits 0 even when a tool result
// has isError, so every test parses stdout and asserts on it.
//
// It runs from the package's own build/ folder: inspector-cli 1.0.3 looks for
// `../package.json` relative to the *working directory* but imports it
// relative to its own file (modelcontextprotocol/inspector#1503, #1337), so
// from a folder without a parent package.json (e.g. a project root) it dies
// with ERR_MODULE_NOT_FOUND before connecting.
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ROOT } from '../../scripts/lib/dev-env.ts'
import { Customer, Order, structured, toolError, ToolList } from './support/mcp.ts'
import { run, type RunResult } from './support/run.ts'
import { startDevServer, type DevServer, type Role } from './support/server.ts'

const BIN = join(ROOT, 'node_modules', '.bin', 'mcp-inspector-cli')
const CWD = join(dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/inspector-cli/package.json')), 'build')

let server: DevServer

beforeAll(async () => {
  server = await startDevServer()
})

afterAll(async () => {
  await server?.stop()
})

async function inspector(token: string | undefined, ...method: string[]): Promise<RunResult> {
  const auth = token === undefined ? [] : ['--header', `Authorization: Bearer ${token}`]
  return run(BIN, ['--cli', server.mcpUrl, '--transport', 'http', ...auth, ...method], { cwd: CWD, timeoutMs: 30_000 })
}

/** stdout as JSON, after checking the CLI succeeded. */
function json(result: RunResult): unknown {
  expect(result.code, `inspector-cli failed\n--- stderr ---\n${result.stderr}\n--- stdout ---\n${result.stdout}`).toBe(0)
  return JSON.parse(result.stdout)
}

const asRole = async (role: Role) => server.token(role)

describe('MCP Inspector CLI 1.0.3 over Streamable HTTP with a Bearer header', () => {
  it('tools/list as admin lists every business tool, fully declared', async () => {
    const { tools } = ToolList.parse(json(await inspector(await asRole('admin'), '--method', 'tools/list')))
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['get_customer', 'list_orders', 'search_products', 'update_order', 'create_ticket', 'search', 'execute_query']))
    for (const tool of tools) expect(tool.outputSchema, tool.name).toBeDefined()
  })

  it('tools/list as read-only lists only the read-only tools', async () => {
    const { tools } = ToolList.parse(json(await inspector(await asRole('read-only'), '--method', 'tools/list')))
    expect(tools.map((t) => t.name).sort()).toEqual(['get_customer', 'list_orders', 'search_products'])
  })

  it('tools/call get_customer returns the customer as structuredContent', async () => {
    const result = json(await inspector(await asRole('read-only'), '--method', 'tools/call', '--tool-name', 'get_customer', '--tool-arg', 'customerId=cus_001'))
    const { customer } = structured(result, z.object({ customer: Customer }))
    expect(customer.id).toBe('cus_001')
  })

  it('tools/call passes typed arguments (numbers, enums) through to the tool', async () => {
    const result = json(await inspector(await asRole('editor'), '--method', 'tools/call', '--tool-name', 'list_orders', '--tool-arg', 'status=pending', 'limit=2'))
    const { orders } = structured(result, z.object({ orders: z.array(Order), nextCursor: z.string().optional() }))
    expect(orders).toHaveLength(2)
    for (const order of orders) expect(order.status).toBe('pending')
  })

  it('a tool error exits 0 but its JSON says isError with the reason', async () => {
    const result = json(await inspector(await asRole('read-only'), '--method', 'tools/call', '--tool-name', 'get_customer', '--tool-arg', 'customerId=cus_999'))
    expect(toolError(result)).toContain('cus_999 not found')
  })

  it('without the Authorization header the CLI cannot connect (401) and exits non-zero', async () => {
    const result = await inspector(undefined, '--method', 'tools/list')
    expect(result.code).not.toBe(0)
    expect(result.stdout.trim()).toBe('')
    expect(result.stderr).toContain('authentication required')
  })
})
