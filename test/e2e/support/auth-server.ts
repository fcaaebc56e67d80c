// A real OAuth 2.1 authorization server for the e2e tests: `oidc-provider`
// (auth-server-process.ts) as its own process group on a free loopback port.
// The Worker trusts it the way it trusts any identity provider — AUTH_ISSUER =
// `issuer`, AUTH_JWKS_URL = `jwksUri` (JWT access tokens), or
// AUTH_INTROSPECTION_* = `introspectionEndpoint` + the `introspector` client
// (opaque access tokens, RFC 7662) — and the SDK clients discover it from the
// Worker's protected-resource metadata.
//
//   const as = await startAuthServer()
//   const worker = await startDevServer({ vars: as.workerVars() })
//   await as.addResource(worker.mcpUrl)            // tokens for it: JWTs, aud = MCP URL
//   ... as.clients.reader, as.authorize(url), as.rotateKeys(), as.setJwksAvailable(false)
//   await as.stop()
//
// Opaque tokens instead:
//   const worker = await startDevServer({ vars: as.introspectionVars() })
//   await as.addResource(worker.mcpUrl, { accessTokenFormat: 'opaque' })
//   ... as.revoke(client, token), as.setIntrospection('down' | 'slow' | 'up'), (await as.stats()).introspection
//
// Clients (all registered statically; secrets are test-only constants):
//   reader  client_credentials, may only get customers:read orders:read, no role
//   editor  client_credentials, role claim "editor" (scopes come from the role)
//   admin   client_credentials, role claim "admin"
//   dpop    client_credentials, dpop_bound_access_tokens: true (cnf.jkt tokens only)
//   user    public client, authorization_code + PKCE + refresh_token, any policy scope;
//           accounts are login names (`authorize(url, { login })`); account "rita"
//           has role "read-only", others no role.
//   introspector  confidential (client_secret_basic), no grants: only calls the
//           introspection endpoint — the Worker's AUTH_INTROSPECTION_CLIENT_*.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ClientMetadata } from 'oidc-provider'
import { POLICY } from '../../../src/policy/policy.ts'
import { ROOT } from '../../../scripts/lib/dev-env.ts'
import type { Command, IntrospectionMode, ProcessConfig, Reply, ResourceConfig, Stats } from './auth-server-process.ts'
import { captureOutput, freePorts, killGroup, liveGroups } from './server.ts'

export type { IntrospectionMode, Stats } from './auth-server-process.ts'

/** Every scope of the policy except offline_access: what a token for the MCP server may carry. */
export const POLICY_SCOPES: string[] = [...POLICY.scopes.keys()].filter((s) => s !== 'offline_access')

export interface ConfidentialClient {
  clientId: string
  clientSecret: string
  /** The scopes registered for it (space-separated). */
  scope: string
}

export interface PublicClient {
  clientId: string
  redirectUri: string
  scope: string
}

export interface AuthServer {
  /** http://127.0.0.1:<port> — the `iss` of its tokens. */
  issuer: string
  /** `${issuer}/jwks` */
  jwksUri: string
  /** `${issuer}/token` */
  tokenEndpoint: string
  /** `${issuer}/token/introspection` (RFC 7662; client_secret_basic). */
  introspectionEndpoint: string
  /** `${issuer}/token/revocation` (RFC 7009). */
  revocationEndpoint: string
  clients: { reader: ConfidentialClient; editor: ConfidentialClient; admin: ConfidentialClient; dpop: ConfidentialClient; user: PublicClient }
  /** The client that may call the introspection endpoint (and nothing else). */
  introspector: { clientId: string; clientSecret: string }
  /** AUTH_ISSUER and AUTH_JWKS_URL for startDevServer({ vars }). */
  workerVars(): Record<string, string>
  /** AUTH_ISSUER and AUTH_INTROSPECTION_URL/_CLIENT_ID/_CLIENT_SECRET (no JWKS) for startDevServer({ vars }). */
  introspectionVars(): Record<string, string>
  /**
   * Register a resource (RFC 8707): tokens requested for it have aud = resource;
   * JWTs unless `accessTokenFormat: 'opaque'`. Default scopes: the policy's.
   */
  addResource(resource: string, config?: Partial<ResourceConfig>): Promise<void>
  /** Publishes a new ES256 key and signs with it from now on; the old key stays published. Returns the new kid. */
  rotateKeys(): Promise<{ kid: string; kids: string[] }>
  /** false: GET /jwks answers 503 (the rest of the AS keeps working). */
  setJwksAvailable(available: boolean): Promise<void>
  /** The published public keys. */
  jwks(): Promise<{ keys: Array<Record<string, unknown>> }>
  /**
   * up: the introspection endpoint answers; down: it answers 503 (counted in
   * stats); slow: each answer is delayed by `delayMs` (default 10 s) first.
   */
  setIntrospection(mode: IntrospectionMode, delayMs?: number): Promise<void>
  /** Revokes an opaque token at the revocation endpoint, as its client (RFC 7009); throws unless the AS answers 200. */
  revoke(client: ConfidentialClient, token: string): Promise<void>
  /** Requests counted at the AS since start (or resetStats). */
  stats(): Promise<Stats>
  resetStats(): Promise<void>
  /** A client_credentials token straight from the token endpoint (no SDK); `headers` e.g. a `DPoP` proof for a bound token. */
  clientCredentialsToken(client: ConfidentialClient, opts: { resource: string; scope?: string; headers?: Record<string, string> }): Promise<TokenResponse>
  /**
   * Plays the user at the development login and consent pages: follows the
   * authorization URL, signs in as `login`, consents to what is asked, and
   * returns the redirect back to the client (`?code=…&state=…`, or `?error=…`).
   */
  authorize(authorizationUrl: string | URL, opts?: { login?: string }): Promise<URL>
  output(): string
  /** Kills the process group and waits until it is gone. */
  stop(): Promise<void>
}

export interface TokenResponse {
  access_token: string
  token_type: string
  expires_in: number
  scope?: string
}

const READY_TIMEOUT_MS = 30_000
const COMMAND_TIMEOUT_MS = 10_000
const MAX_OUTPUT_CHARS = 100_000
const DEFAULT_SLOW_INTROSPECTION_MS = 10_000
const PROCESS_SCRIPT = fileURLToPath(new URL('./auth-server-process.ts', import.meta.url))

const secret = (name: string) => `test-only-secret-${name}-0123456789abcdef0123456789abcdef`

const CLIENTS = {
  reader: { clientId: 'agent-reader', clientSecret: secret('reader'), scope: 'customers:read orders:read' },
  editor: { clientId: 'agent-editor', clientSecret: secret('editor'), scope: POLICY_SCOPES.join(' ') },
  admin: { clientId: 'agent-admin', clientSecret: secret('admin'), scope: POLICY_SCOPES.join(' ') },
  dpop: { clientId: 'agent-dpop', clientSecret: secret('dpop'), scope: POLICY_SCOPES.join(' ') },
  user: { clientId: 'mcp-user-app', redirectUri: 'http://127.0.0.1/oauth/callback', scope: POLICY_SCOPES.join(' ') },
} satisfies AuthServer['clients']

const INTROSPECTOR = { clientId: 'bastion-introspector', clientSecret: secret('introspector') } satisfies AuthServer['introspector']

/** client_secret_basic (RFC 6749 §2.3.1: each part form-urlencoded first). */
const basic = (c: { clientId: string; clientSecret: string }) =>
  `Basic ${Buffer.from(`${encodeURIComponent(c.clientId)}:${encodeURIComponent(c.clientSecret)}`).toString('base64')}`

function registrations(): ClientMetadata[] {
  const machine = (c: ConfidentialClient, extra: Partial<ClientMetadata> = {}): ClientMetadata => ({
    client_id: c.clientId,
    client_secret: c.clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    // The SDK's ClientCredentialsProvider authenticates with client_secret_basic.
    token_endpoint_auth_method: 'client_secret_basic',
    scope: c.scope,
    id_token_signed_response_alg: 'ES256',
    ...extra,
  })
  return [
    machine(CLIENTS.reader),
    machine(CLIENTS.editor),
    machine(CLIENTS.admin),
    machine(CLIENTS.dpop, { dpop_bound_access_tokens: true }),
    {
      client_id: CLIENTS.user.clientId,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [CLIENTS.user.redirectUri],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      scope: `openid offline_access ${CLIENTS.user.scope}`,
      id_token_signed_response_alg: 'ES256',
    },
    {
      client_id: INTROSPECTOR.clientId,
      client_secret: INTROSPECTOR.clientSecret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ]
}

/** A minimal cookie jar: the AS's cookies are distinct by name, so paths are not tracked. */
class CookieJar {
  private readonly cookies = new Map<string, string>()
  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const eq = pair!.indexOf('=')
      if (eq <= 0) continue
      const name = pair!.slice(0, eq).trim()
      const value = pair!.slice(eq + 1).trim()
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }
}

export async function startAuthServer(): Promise<AuthServer> {
  const [port] = (await freePorts(1)) as [number]
  const issuer = `http://127.0.0.1:${port}`
  const config: ProcessConfig = {
    port,
    scopes: POLICY_SCOPES,
    clients: registrations(),
    clientRoles: { [CLIENTS.editor.clientId]: 'editor', [CLIENTS.admin.clientId]: 'admin' },
    accountRoles: { rita: 'read-only' },
    resources: {},
  }

  // `node --import tsx` so the entry can be TypeScript; detached = setsid: its own process group.
  const child = spawn(process.execPath, ['--import', 'tsx', PROCESS_SCRIPT], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, AUTH_SERVER_CONFIG: JSON.stringify(config), NODE_ENV: 'test', NO_COLOR: '1' },
  })
  const pgid = child.pid
  if (pgid === undefined) throw new Error('the authorization server could not be started')
  liveGroups.add(pgid)

  const output = captureOutput(child, MAX_OUTPUT_CHARS)

  let nextId = 1
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  child.on('message', (message: Reply | { ready: true }) => {
    if ('ready' in message) return
    const waiter = pending.get(message.id)
    if (!waiter) return
    pending.delete(message.id)
    if (message.ok) waiter.resolve(message.result)
    else waiter.reject(new Error(`authorization server: ${message.error}`))
  })
  child.on('exit', () => {
    for (const waiter of pending.values()) waiter.reject(new Error(`authorization server exited\n--- output ---\n${output()}`))
    pending.clear()
  })

  const send = <T>(command: Command): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (!child.connected) return reject(new Error('authorization server is not running'))
      const id = nextId++
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new Error(`authorization server did not answer ${command.cmd}`))
      }, COMMAND_TIMEOUT_MS)
      pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v as T)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      })
      child.send({ id, ...command })
    })

  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await killGroup(pgid)
      liveGroups.delete(pgid)
    })())

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`authorization server not ready within ${READY_TIMEOUT_MS / 1000} s\n--- output ---\n${output()}`)), READY_TIMEOUT_MS)
      child.on('message', (m: { ready?: boolean }) => {
        if (m.ready) (clearTimeout(timer), resolve())
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`authorization server exited (${code ?? signal}) before it was ready\n--- output ---\n${output()}`))
      })
    })
  } catch (error) {
    await stop()
    throw error
  }

  const tokenEndpoint = `${issuer}/token`
  const introspectionEndpoint = `${issuer}/token/introspection`
  const revocationEndpoint = `${issuer}/token/revocation`

  async function authorize(authorizationUrl: string | URL, opts: { login?: string } = {}): Promise<URL> {
    const jar = new CookieJar()
    const redirectBase = new URL(CLIENTS.user.redirectUri)
    let url = new URL(authorizationUrl)
    let method: 'GET' | 'POST' = 'GET'
    let body: URLSearchParams | undefined
    for (let hop = 0; hop < 20; hop++) {
      if (url.origin === redirectBase.origin && url.pathname === redirectBase.pathname) return url
      const response = await fetch(url, {
        method,
        redirect: 'manual',
        headers: { cookie: jar.header(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
        body,
      })
      jar.store(response)
      method = 'GET'
      body = undefined
      const location = response.headers.get('location')
      if (response.status >= 300 && response.status < 400 && location) {
        url = new URL(location, url)
        continue
      }
      const html = await response.text()
      if (response.status !== 200) throw new Error(`authorization: ${url.pathname} answered ${response.status}: ${html.slice(0, 500)}`)
      // A development interaction page: the login form or the consent form.
      const action = html.match(/<form[^>]*action="([^"]+)"/)?.[1]
      const prompt = html.match(/name="prompt" value="([^"]+)"/)?.[1]
      if (!action || !prompt) throw new Error(`authorization: unexpected page at ${url.pathname}: ${html.slice(0, 500)}`)
      body = new URLSearchParams({ prompt })
      if (prompt === 'login') {
        body.set('login', opts.login ?? 'alice')
        body.set('password', 'any')
      }
      method = 'POST'
      url = new URL(action.replace(/&amp;/g, '&'), url)
    }
    throw new Error('authorization: too many redirects')
  }

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    tokenEndpoint,
    introspectionEndpoint,
    revocationEndpoint,
    clients: CLIENTS,
    introspector: INTROSPECTOR,
    workerVars: () => ({ AUTH_ISSUER: issuer, AUTH_JWKS_URL: `${issuer}/jwks` }),
    introspectionVars: () => ({
      AUTH_ISSUER: issuer,
      AUTH_INTROSPECTION_URL: introspectionEndpoint,
      AUTH_INTROSPECTION_CLIENT_ID: INTROSPECTOR.clientId,
      AUTH_INTROSPECTION_CLIENT_SECRET: INTROSPECTOR.clientSecret,
    }),
    addResource: async (resource, cfg = {}) => {
      await send({
        cmd: 'addResource',
        resource,
        config: {
          scopes: cfg.scopes ?? POLICY_SCOPES,
          ...(cfg.accessTokenTTL ? { accessTokenTTL: cfg.accessTokenTTL } : {}),
          ...(cfg.accessTokenFormat ? { accessTokenFormat: cfg.accessTokenFormat } : {}),
        },
      })
    },
    rotateKeys: () => send({ cmd: 'rotateKeys' }),
    setJwksAvailable: async (available) => {
      await send({ cmd: 'setJwksAvailable', available })
    },
    jwks: () => send({ cmd: 'jwks' }),
    setIntrospection: async (mode, delayMs = DEFAULT_SLOW_INTROSPECTION_MS) => {
      await send({ cmd: 'setIntrospection', mode, delayMs })
    },
    revoke: async (client, token) => {
      const response = await fetch(revocationEndpoint, {
        method: 'POST',
        headers: { authorization: basic(client), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
      })
      const text = await response.text()
      if (response.status !== 200) throw new Error(`revocation endpoint answered ${response.status}: ${text.slice(0, 300)}`)
    },
    stats: () => send({ cmd: 'stats' }),
    resetStats: async () => {
      await send({ cmd: 'resetStats' })
    },
    clientCredentialsToken: async (client, { resource, scope, headers = {} }) => {
      const response = await fetch(tokenEndpoint, {
        method: 'POST',
        headers: {
          ...headers,
          authorization: basic(client),
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, ...(scope ? { scope } : {}) }),
      })
      const json = (await response.json()) as TokenResponse & { error?: string; error_description?: string }
      if (!response.ok) throw new Error(`token endpoint answered ${response.status}: ${json.error} ${json.error_description ?? ''}`)
      return json
    },
    authorize,
    output,
    stop,
  }
}
