// The authorization server process started by auth-server.ts: a real
// `oidc-provider` on a loopback port, in its own process group. It is
// configured the way a company's identity provider would be for this MCP
// server, and nothing in the Worker knows it is a test:
//   - RFC 8707 resource indicators: a token requested for a registered
//     resource is an RFC 9068 JWT (`typ: at+jwt`) whose `aud` is that
//     resource, signed ES256 with the current key of /jwks — or, for a
//     resource registered with `accessTokenFormat: 'opaque'`, an opaque
//     token with that `aud`, which only introspection can tell about;
//   - RFC 7662 introspection at /token/introspection (client_secret_basic;
//     the confidential client that calls it is in `clients` like any other).
//     As oidc-provider answers it: a client_credentials token has no `sub`
//     (only `client_id`), the extra token claims (`role`) are in the answer,
//     `cnf.jkt` for a DPoP-bound token; JWTs cannot be introspected there.
//     `setIntrospection` takes the route down (503) or delays its answers;
//   - RFC 7009 revocation at /token/revocation (by the token's own client);
//   - grants: client_credentials, authorization_code + PKCE (the
//     development login/consent pages, driven headlessly by the tests),
//     refresh_token; DPoP (RFC 9449) on;
//   - the role claim (`role`) comes from the client (client_credentials) or
//     the account (authorization code) through `extraTokenClaims`.
// Control from the test process goes over the Node IPC channel (no control
// endpoint on the network): see `Command` below. The process exits when the
// channel closes, so a crashed test run does not leave it behind.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import Provider, { errors, type ClientMetadata, type Configuration } from 'oidc-provider'

export interface ResourceConfig {
  /** Scopes a token for this resource may carry. */
  scopes: string[]
  /** Access token lifetime, seconds. */
  accessTokenTTL?: number
  /** 'jwt' (default): RFC 9068 JWTs; 'opaque': opaque tokens (introspection only). */
  accessTokenFormat?: 'jwt' | 'opaque'
}

/** up: introspection answers normally; down: 503; slow: each answer waits `delayMs` first. */
export type IntrospectionMode = 'up' | 'down' | 'slow'

export interface ProcessConfig {
  port: number
  /** Scopes the AS knows besides openid/offline_access (client `scope` metadata may only use these). */
  scopes: string[]
  clients: ClientMetadata[]
  /** client_id → role claim of its client_credentials tokens. */
  clientRoles: Record<string, string>
  /** account id (the login name) → role claim of its tokens. */
  accountRoles: Record<string, string>
  /** resource indicator (e.g. the MCP URL) → what a token for it may carry. */
  resources: Record<string, ResourceConfig>
}

export type Command =
  | { cmd: 'rotateKeys' }
  | { cmd: 'setJwksAvailable'; available: boolean }
  | { cmd: 'addResource'; resource: string; config: ResourceConfig }
  | { cmd: 'stats' }
  | { cmd: 'resetStats' }
  | { cmd: 'jwks' }
  | { cmd: 'setIntrospection'; mode: IntrospectionMode; delayMs: number }

export interface Stats {
  /** GET /jwks requests, answered or refused. */
  jwks: number
  /** POST /token requests. */
  token: number
  /** POST /token/introspection requests, answered or refused. */
  introspection: number
}

export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string }

type SigningKey = { privateJwk: JWK & { kid: string }; publicJwk: JWK & { kid: string } }

const ALG = 'ES256'
let keyCounter = 0

async function newKey(): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(ALG, { extractable: true })
  const kid = `as-key-${++keyCounter}-${Math.random().toString(36).slice(2, 8)}`
  return {
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: ALG, use: 'sig' },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: ALG, use: 'sig' },
  }
}

function readConfig(): ProcessConfig {
  const raw = process.env['AUTH_SERVER_CONFIG']
  if (!raw) throw new Error('AUTH_SERVER_CONFIG is not set')
  return JSON.parse(raw) as ProcessConfig
}

const config = readConfig()
const issuer = `http://127.0.0.1:${config.port}`
const resources = new Map(Object.entries(config.resources))
/** Newest first: the first key signs, all are published. */
const keys: SigningKey[] = [await newKey()]
let jwksAvailable = true
let introspection: { mode: IntrospectionMode; delayMs: number } = { mode: 'up', delayMs: 0 }
const stats: Stats = { jwks: 0, token: 0, introspection: 0 }
/** oidc-provider's default routes. */
const TOKEN_PATH = '/token'
const INTROSPECTION_PATH = '/token/introspection'

function providerConfiguration(): Configuration {
  const signingKid = keys[0]!.privateJwk.kid
  return {
    clients: config.clients,
    jwks: { keys: keys.map((k) => k.privateJwk) },
    clientDefaults: { id_token_signed_response_alg: ALG },
    cookies: { keys: ['test-only-cookie-key-not-a-secret'] },
    // Any login name is an account; its id becomes `sub`.
    findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', ...config.scopes],
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      // Any authenticated confidential client may introspect any token (oidc-provider's default policy).
      introspection: { enabled: true },
      revocation: { enabled: true },
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // The client names its resource (RFC 8707); a request without one gets
        // no JWT for us (an opaque token the Worker refuses), as with most IdPs.
        defaultResource: (_ctx, _client, oneOf) => oneOf ?? undefined,
        // A refresh or a code exchange without `resource` stays on the granted one.
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator, client) => {
          const resource = resources.get(resourceIndicator)
          if (!resource) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`)
          // Least privilege per client, the way IdPs grant API scopes to an
          // application: a client may only ask for the scopes registered for
          // it; asking for more is `invalid_scope`, not a silently smaller token.
          const allowed = client.scope ? new Set(client.scope.split(' ')) : undefined
          const requested = String(ctx.oidc.params?.['scope'] ?? '').split(' ').filter(Boolean)
          for (const scope of requested) {
            if (resource.scopes.includes(scope) && allowed && !allowed.has(scope)) {
              throw new errors.InvalidScope('requested scope is not allowed', scope)
            }
          }
          const common = {
            scope: resource.scopes.filter((s) => !allowed || allowed.has(s)).join(' '),
            audience: resourceIndicator,
            accessTokenTTL: resource.accessTokenTTL ?? 600,
          }
          return resource.accessTokenFormat === 'opaque'
            ? { ...common, accessTokenFormat: 'opaque' }
            : { ...common, accessTokenFormat: 'jwt', jwt: { sign: { alg: ALG, kid: signingKid } } }
        },
      },
    },
    extraTokenClaims: (_ctx, token) => {
      const accountId = 'accountId' in token ? token.accountId : undefined
      const role = accountId !== undefined ? config.accountRoles[accountId] : config.clientRoles[token.clientId ?? '']
      return role === undefined ? undefined : { role }
    },
    // A client allowed the refresh_token grant gets a refresh token with its
    // code; `offline_access` is not needed (the MCP server never advertises it).
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: { AccessToken: 600, ClientCredentials: 600, AuthorizationCode: 60, RefreshToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
    renderError: (ctx, out) => {
      ctx.type = 'json'
      ctx.body = out
    },
  }
}

function buildProvider(): (req: IncomingMessage, res: ServerResponse) => void {
  const provider = new Provider(issuer, providerConfiguration())
  // Resource server and token events are not logged: the tests read outcomes.
  return provider.callback()
}

let handler = buildProvider()

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]
  if (path === '/jwks') {
    stats.jwks++
    if (!jwksAvailable) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' })
      res.end('jwks temporarily unavailable')
      return
    }
  }
  if (path === TOKEN_PATH) stats.token++
  if (path === INTROSPECTION_PATH && req.method === 'POST') {
    stats.introspection++
    if (introspection.mode === 'down') {
      req.resume()
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' })
      res.end('introspection temporarily unavailable')
      return
    }
    if (introspection.mode === 'slow') {
      // The body stays unread until the handler runs; a caller that gave up meanwhile gets nothing.
      const timer = setTimeout(() => {
        if (!res.destroyed) handler(req, res)
      }, introspection.delayMs)
      res.once('close', () => clearTimeout(timer))
      return
    }
  }
  handler(req, res)
})

async function run(command: Command): Promise<unknown> {
  switch (command.cmd) {
    case 'rotateKeys': {
      // A rotation as a real AS does it: publish a new key and sign with it,
      // keep the old one published so tokens signed with it still verify.
      // oidc-provider's keystore is fixed per instance, so a new instance takes
      // over; grants and tokens live in the process-wide memory adapter.
      keys.unshift(await newKey())
      handler = buildProvider()
      return { kid: keys[0]!.publicJwk.kid, kids: keys.map((k) => k.publicJwk.kid) }
    }
    case 'setJwksAvailable':
      jwksAvailable = command.available
      return { available: jwksAvailable }
    case 'addResource':
      resources.set(command.resource, command.config)
      return { resources: [...resources.keys()] }
    case 'stats':
      return { ...stats }
    case 'resetStats':
      stats.jwks = 0
      stats.token = 0
      stats.introspection = 0
      return { ...stats }
    case 'setIntrospection':
      introspection = { mode: command.mode, delayMs: command.delayMs }
      return { ...introspection }
    case 'jwks':
      return { keys: keys.map((k) => k.publicJwk) }
  }
}

process.on('message', (message: { id: number } & Command) => {
  run(message).then(
    (result) => process.send?.({ id: message.id, ok: true, result } satisfies Reply),
    (error: unknown) => process.send?.({ id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) } satisfies Reply),
  )
})
process.on('disconnect', () => process.exit(0))

server.listen(config.port, '127.0.0.1', () => {
  process.send?.({ ready: true, issuer })
})
