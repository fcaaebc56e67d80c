// One error model. Every refusal the Worker makes is an AppError; this module
// alone turns one into a Response: HTTP status, headers (WWW-Authenticate,
// Allow, Retry-After ...) and a JSON-RPC error body that carries the request
// id. Internal failures are turned into a generic 500 here too, so no stack,
// SQL text or secret can reach a client by accident.

export type AppErrorKind =
  | 'config'
  | 'unauthorized'
  | 'insufficient_scope'
  | 'origin_forbidden'
  | 'parse_error'
  | 'invalid_request'
  | 'bad_header'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'method_not_allowed'
  | 'method_not_found'
  | 'rate_limited'
  | 'unavailable'
  | 'internal'

interface Spec {
  status: number
  rpcCode: number
  message: string
}

// JSON-RPC codes: the standard ones where they fit, the MCP SDK's -32020 for
// header/body mismatches, and -3200x server-defined codes for HTTP refusals.
const SPECS: Record<AppErrorKind, Spec> = {
  config: { status: 500, rpcCode: -32603, message: 'server misconfigured' },
  unauthorized: { status: 401, rpcCode: -32001, message: 'authentication required' },
  insufficient_scope: { status: 403, rpcCode: -32003, message: 'insufficient scope' },
  origin_forbidden: { status: 403, rpcCode: -32003, message: 'origin not allowed' },
  parse_error: { status: 400, rpcCode: -32700, message: 'parse error: body is not valid JSON' },
  invalid_request: { status: 400, rpcCode: -32600, message: 'invalid request' },
  bad_header: { status: 400, rpcCode: -32020, message: 'header does not match body' },
  payload_too_large: { status: 413, rpcCode: -32600, message: 'request body too large' },
  unsupported_media_type: { status: 415, rpcCode: -32600, message: 'content-type must be application/json' },
  method_not_allowed: { status: 405, rpcCode: -32600, message: 'method not allowed' },
  // A JSON-RPC-level refusal: HTTP 200 with the standard "method not found" error.
  method_not_found: { status: 200, rpcCode: -32601, message: 'method not found' },
  rate_limited: { status: 429, rpcCode: -32029, message: 'rate limit exceeded' },
  unavailable: { status: 503, rpcCode: -32603, message: 'temporarily unavailable' },
  internal: { status: 500, rpcCode: -32603, message: 'internal error' },
}

export interface AppErrorOptions {
  /** Replaces the kind's default public message. Must be safe to show. */
  message?: string
  headers?: Record<string, string>
  /** The JSON-RPC id of the request being refused, when known. */
  rpcId?: string | number | null
  /** Extra fields for the JSON-RPC error's `data` (public). */
  data?: Record<string, unknown>
  /** Private detail for the log; never sent. */
  detail?: string
}

export class AppError extends Error {
  override name = 'AppError'
  readonly kind: AppErrorKind
  readonly status: number
  readonly headers: Record<string, string>
  readonly rpcId: string | number | null
  readonly data: Record<string, unknown> | undefined
  readonly detail: string | undefined

  constructor(kind: AppErrorKind, opts: AppErrorOptions = {}) {
    const spec = SPECS[kind]
    super(opts.message ?? spec.message)
    this.kind = kind
    this.status = spec.status
    this.headers = opts.headers ?? {}
    this.rpcId = opts.rpcId ?? null
    this.data = opts.data
    this.detail = opts.detail
  }

  get rpcCode(): number {
    return SPECS[this.kind].rpcCode
  }
}

/** The JSON-RPC error body for an AppError, with the request id in `data`. */
export function errorBody(error: AppError, requestId: string): string {
  const message = error.status >= 500 ? `${error.message} (request ${requestId})` : error.message
  return JSON.stringify({
    jsonrpc: '2.0',
    id: error.rpcId,
    error: { code: error.rpcCode, message, data: { ...error.data, requestId } },
  })
}

export function errorResponse(error: AppError, requestId: string): Response {
  return new Response(errorBody(error, requestId), {
    status: error.status,
    headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...error.headers },
  })
}

/** Quotes a value for an RFC 6750 auth-param (quoted-string). */
export function authParam(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`
}

/**
 * The 401 challenge. `error="invalid_token"` only when a token was sent;
 * `scope` names the scopes to start with (policy.ts `startScopes`), omitted
 * when there are none.
 */
export function unauthorized(resourceMetadataUrl: string, tokenSent: boolean, detail?: string, scopes: readonly string[] = []): AppError {
  const params = [`resource_metadata=${authParam(resourceMetadataUrl)}`]
  if (scopes.length > 0) params.push(`scope=${authParam(scopes.join(' '))}`)
  if (tokenSent) params.unshift('error="invalid_token"', 'error_description="invalid token"')
  return new AppError('unauthorized', {
    message: tokenSent ? 'invalid token' : 'authentication required',
    headers: { 'www-authenticate': `Bearer ${params.join(', ')}` },
    ...(detail ? { detail } : {}),
  })
}
