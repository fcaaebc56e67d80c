// Reaching the Worker under test from inside the workers pool: plain fetches
// and real MCP SDK clients whose `fetch` is routed to the Worker's handler.
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client'
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env, exports } from 'cloudflare:workers'
import worker from '../../src/index.ts'
import { mintToken, type MintOptions } from './tokens.ts'
import { testEnv } from './test-env.ts'

export const MCP_URL = () => testEnv(env).AUTH_AUDIENCE

/** Sends a request to the Worker (no network involved). */
export function callWorker(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const request = new Request(input, init)
  return (exports as unknown as { default: { fetch(r: Request): Promise<Response> } }).default.fetch(request)
}

export interface RpcOptions {
  token?: string
  headers?: Record<string, string>
  id?: number | string
}

/** POSTs one JSON-RPC message to /mcp, as a 2025-11-25 client would. */
export async function rpc(method: string, params: Record<string, unknown> | undefined, opts: RpcOptions = {}): Promise<Response> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25',
    ...opts.headers,
  }
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`
  return callWorker(MCP_URL(), {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: opts.id ?? 1, method, ...(params ? { params } : {}) }),
  })
}

/**
 * POSTs one JSON-RPC message to /mcp, as a 2025-11-25 client would, to the
 * Worker running under extra settings (environment values over the test
 * bindings: ROW_SCOPE, AUTH_PRESET, ...); waits for its waitUntil work.
 */
export async function rpcWith(settings: Record<string, string>, token: string, method: string, params: Record<string, unknown> = {}): Promise<Response> {
  const base = testEnv(env)
  const ctx = createExecutionContext()
  const req = new Request(base.AUTH_AUDIENCE, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  })
  const res = await worker.fetch(req, { ...base, ...settings }, ctx)
  await waitOnExecutionContext(ctx)
  return res
}

/** What a 2026-07-28 request declares about its client in `_meta`. */
export interface ModernClient {
  capabilities?: Record<string, unknown>
}

/**
 * POSTs one 2026-07-28 JSON-RPC request (`_meta` envelope, Mcp-Method and
 * Mcp-Name headers) to the Worker under extra settings; waits for its
 * waitUntil work.
 */
export async function modernRpc(settings: Record<string, string>, token: string, method: string, params: Record<string, unknown>, client: ModernClient = {}): Promise<Response> {
  const base = testEnv(env)
  const ctx = createExecutionContext()
  const name: Record<string, string> = typeof params['name'] === 'string' ? { 'mcp-name': params['name'] } : {}
  const meta = {
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientInfo': { name: 'bastion-tests', version: '1.0.0' },
    'io.modelcontextprotocol/clientCapabilities': client.capabilities ?? {},
  }
  const req = new Request(base.AUTH_AUDIENCE, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2026-07-28',
      'mcp-method': method,
      ...name,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: meta } }),
  })
  const res = await worker.fetch(req, { ...base, ...settings }, ctx)
  await waitOnExecutionContext(ctx)
  return res
}

/** Reads a JSON or single-event SSE response body as the JSON-RPC message. */
export async function rpcBody(response: Response): Promise<Record<string, unknown>> {
  const text = await response.text()
  if (response.headers.get('content-type')?.includes('text/event-stream')) {
    const data = text.split('\n').find((l) => l.startsWith('data: '))
    return JSON.parse(data!.slice(6)) as Record<string, unknown>
  }
  return JSON.parse(text) as Record<string, unknown>
}

const workerFetch = (input: string | URL | Request, init?: RequestInit) => callWorker(input, init)

/** How a test client answers an elicitation (the user's part): undefined declares no elicitation capability. */
export type Elicit = (params: { message: string; requestedSchema?: unknown }) => { action: 'accept' | 'decline' | 'cancel'; content?: Record<string, string | number | boolean> }

/** A connected MCP SDK v2 client; era 'modern' pins 2026-07-28, 'legacy' speaks 2025-11-25. */
export async function connectClient(token: MintOptions | string, era: 'modern' | 'legacy' = 'modern', elicit?: Elicit): Promise<ClientV2> {
  const bearer = typeof token === 'string' ? token : await mintToken(token)
  const transport = new TransportV2(new URL(MCP_URL()), { fetch: workerFetch, requestInit: { headers: { authorization: `Bearer ${bearer}` } } })
  const client = new ClientV2(
    { name: 'bastion-tests', version: '1.0.0' },
    {
      ...(era === 'modern' ? { versionNegotiation: { mode: { pin: '2026-07-28' } } } : {}),
      ...(elicit ? { capabilities: { elicitation: { form: {} } } } : {}),
    },
  )
  if (elicit) client.setRequestHandler('elicitation/create', (request) => elicit(request.params as Parameters<Elicit>[0]))
  await client.connect(transport)
  return client
}
