// MCP clients for the e2e tests (SDK v2 on the newest revision, SDK v1 on
// 2025-11-25) and the shapes the INTERFACE promises, checked with zod so a
// test never reaches into an unchecked `unknown`.
import { Client, ClientCredentialsProvider, StreamableHTTPClientTransport, type ClientCredentialsProviderOptions, type DpopSession } from '@modelcontextprotocol/client'
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { expect } from 'vitest'
import { z } from 'zod'

/** One plain JSON-RPC POST to `mcpUrl` (2025-11-25, no initialize needed: the server is stateless). */
export function postRpc(mcpUrl: string, authorization: string | undefined, method = 'tools/list', params: unknown = {}, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(mcpUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-11-25',
      ...(authorization ? { authorization } : {}),
      ...headers,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  })
}

export const NEWEST_REVISION = '2026-07-28'
const CLIENT_INFO = { name: 'bastion-e2e', version: '1.0.0' }

/** SDK v2 client pinned to the 2026-07-28 (stateless) revision. */
export async function connectV2(mcpUrl: string, token: string): Promise<Client> {
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode: { pin: NEWEST_REVISION } } })
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } }))
  return client
}

/** SDK v1 client: the 2025-11-25 initialize handshake, as most agents connect today. */
export async function connectV1(mcpUrl: string, token: string): Promise<{ client: V1Client; transport: V1Transport }> {
  const client = new V1Client(CLIENT_INFO)
  const transport = new V1Transport(new URL(mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } })
  await client.connect(transport)
  return { client, transport }
}

// ---- shapes (INTERFACE.md "Tools and their arguments") ----

export const OrderStatus = z.enum(['pending', 'paid', 'shipped', 'delivered', 'cancelled'])

export const Customer = z.object({
  id: z.string(),
  name: z.string(),
  company: z.string(),
  email: z.string(),
  phone: z.string(),
  address: z.string(),
  tier: z.string(),
  created_at: z.string(),
})

export const Order = z.object({
  id: z.string(),
  customer_id: z.string(),
  product_id: z.string(),
  quantity: z.number().int(),
  total_cents: z.number().int(),
  status: OrderStatus,
  note: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
})
export type Order = z.infer<typeof Order>

export const Product = z.object({
  id: z.string(),
  sku: z.string(),
  name: z.string(),
  description: z.string(),
  category: z.string(),
  price_cents: z.number().int(),
  stock: z.number().int(),
})

export const Ticket = z.object({
  id: z.string(),
  customer_id: z.string(),
  subject: z.string(),
  body: z.string(),
  priority: z.enum(['low', 'normal', 'high', 'urgent']),
  status: z.enum(['open', 'closed']),
  created_by: z.string(),
  created_at: z.string(),
})

export const SearchHit = z.object({
  kind: z.enum(['customer', 'order', 'product']),
  id: z.string(),
  title: z.string(),
  snippet: z.string(),
  score: z.number(),
})

export const ToolResult = z.object({
  content: z.array(z.looseObject({ type: z.string(), text: z.string().optional() })),
  structuredContent: z.record(z.string(), z.unknown()).optional(),
  isError: z.boolean().optional(),
})

export const ListedTool = z.object({
  name: z.string(),
  title: z.string().optional(),
  description: z.string().optional(),
  inputSchema: z.looseObject({ type: z.literal('object'), properties: z.record(z.string(), z.looseObject({ description: z.string().optional() })).optional() }),
  outputSchema: z.looseObject({ type: z.literal('object') }).optional(),
  annotations: z.looseObject({ readOnlyHint: z.boolean().optional(), destructiveHint: z.boolean().optional() }).optional(),
})
export type ListedTool = z.infer<typeof ListedTool>

export const ToolList = z.object({ tools: z.array(ListedTool) })

/**
 * The successful result's structuredContent, parsed with `schema`; also
 * checks the text block carries the same JSON (for clients that read text).
 */
export function structured<S extends z.ZodType>(result: unknown, schema: S): z.output<S> {
  const parsed = ToolResult.parse(result)
  expect(parsed.isError ?? false, `tool returned an error: ${JSON.stringify(parsed.content)}`).toBe(false)
  expect(parsed.structuredContent).toBeDefined()
  const text = parsed.content.find((block) => block.type === 'text')?.text
  expect(text === undefined ? undefined : JSON.parse(text)).toEqual(parsed.structuredContent)
  return schema.parse(parsed.structuredContent)
}

/** The message of a tool result that must be an error (`isError: true`). */
export function toolError(result: unknown): string {
  const parsed = ToolResult.parse(result)
  expect(parsed.isError, `expected a tool error, got ${JSON.stringify(parsed)}`).toBe(true)
  return parsed.content.map((block) => block.text ?? '').join('\n')
}

export function toolNames(list: unknown): string[] {
  return ToolList.parse(list).tools.map((tool) => tool.name)
}

/** The SDK's client_credentials provider plus the DPoP key it proves possession with (OAuthClientProvider.dpop). */
export class DpopClientCredentialsProvider extends ClientCredentialsProvider {
  constructor(
    options: ClientCredentialsProviderOptions,
    readonly session: DpopSession,
  ) {
    super(options)
  }
  dpop(): DpopSession {
    return this.session
  }
}
