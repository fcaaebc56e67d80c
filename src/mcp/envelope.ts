// The JSON-RPC envelope, parsed once per request: what the pipeline needs to
// decide before the MCP SDK sees the message (method, tool name, arguments,
// client identity). Pure: text in, tagged result out.
//
// Batches (JSON arrays) are refused: MCP removed them in 2025-06-18, and one
// authorization decision per HTTP request keeps the pipeline honest.

export type RpcId = string | number | null

export interface RpcMessage {
  kind: 'request' | 'notification' | 'response'
  id: RpcId
  method: string | undefined
  params: Record<string, unknown> | undefined
  /** params.name of a tools/call, when it is a string. */
  toolName: string | undefined
  /** params.arguments of a tools/call. */
  toolArguments: unknown
  /** Self-reported client identity (initialize clientInfo or the 2026 `_meta` key); for logs and audit only. */
  client: { name: string; version: string } | undefined
  /** The whole parsed message, handed to the SDK so the body is parsed once. */
  raw: Record<string, unknown>
}

export type EnvelopeResult =
  | { ok: true; message: RpcMessage }
  | { ok: false; kind: 'parse_error' | 'invalid_request'; message: string; id: RpcId }

const CLIENT_INFO_META_KEY = 'io.modelcontextprotocol/clientInfo'

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function clientOf(method: string | undefined, params: Record<string, unknown> | undefined) {
  const info = method === 'initialize' ? params?.['clientInfo'] : isObject(params?.['_meta']) ? params['_meta'][CLIENT_INFO_META_KEY] : undefined
  if (!isObject(info) || typeof info['name'] !== 'string') return undefined
  return { name: info['name'].slice(0, 128), version: typeof info['version'] === 'string' ? info['version'].slice(0, 64) : '' }
}

export function parseEnvelope(text: string): EnvelopeResult {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { ok: false, kind: 'parse_error', message: 'parse error: body is not valid JSON', id: null }
  }
  if (Array.isArray(value)) return { ok: false, kind: 'invalid_request', message: 'invalid request: JSON-RPC batches are not supported', id: null }
  if (!isObject(value)) return { ok: false, kind: 'invalid_request', message: 'invalid request: body must be a JSON-RPC 2.0 object', id: null }

  const rawId = value['id']
  const id: RpcId = typeof rawId === 'string' || typeof rawId === 'number' ? rawId : null
  const bad = (message: string): EnvelopeResult => ({ ok: false, kind: 'invalid_request', message: `invalid request: ${message}`, id })

  if (value['jsonrpc'] !== '2.0') return bad('"jsonrpc" must be "2.0"')
  if ('id' in value && rawId !== null && typeof rawId !== 'string' && typeof rawId !== 'number') return bad('"id" must be a string or a number')
  const method = value['method']
  const params = value['params']
  if (method !== undefined && (typeof method !== 'string' || method.length === 0 || method.length > 128)) return bad('"method" must be a non-empty string')
  if (params !== undefined && !isObject(params)) return bad('"params" must be an object')

  let kind: RpcMessage['kind']
  if (typeof method === 'string') kind = 'id' in value ? 'request' : 'notification'
  else if ('result' in value || 'error' in value) kind = 'response'
  else return bad('"method" is missing')
  if (kind === 'request' && rawId === null) return bad('"id" must not be null')

  const isCall = method === 'tools/call'
  const name = isCall ? params?.['name'] : undefined
  return {
    ok: true,
    message: {
      kind,
      id,
      method,
      params,
      toolName: typeof name === 'string' ? name : undefined,
      toolArguments: isCall ? params?.['arguments'] : undefined,
      client: clientOf(method, params),
      raw: value,
    },
  }
}
