// Configuration: parsed and validated once per isolate from the Worker's
// bindings. A missing or malformed setting is never defaulted into an open
// door: `loadConfig` returns a failure naming the setting, and the Worker
// answers every request with 500 until it is fixed (see middleware/config.ts).
// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { isLogLevel, type LogLevel } from './log.ts'
import { formatClaimPath, parseClaimPath, PRESET_NAMES, PRESETS, type ClaimMapping, type ClaimPath, type PresetName } from './auth/claims.ts'
import { POLICY } from './policy/policy.ts'
import { parseRowScope, RowScopeError, scopeClaims, type RowScope } from './policy/row-scope.ts'
import { declaredClaims } from './tools/declared.ts'
import DECLARED_TOOLS from '../tools.config.ts'

const FORBIDDEN_ALGORITHM = /^(none|HS\d+)$/i
const SUPPORTED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const

/** Unset and empty are the same thing for a setting. */
const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()))

const httpsUrl = (name: string) =>
  z
    .string()
    .trim()
    .min(1, `${name} is required`)
    .refine((v) => URL.canParse(v), { message: `${name} must be an absolute URL`, abort: true })
    .refine((v) => {
      if (!URL.canParse(v)) return false
      const u = new URL(v)
      return u.protocol === 'https:' || u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]'
    }, `${name} must use https (http only for loopback)`)

const Jwks = z.object({
  keys: z
    .array(
      z.looseObject({ kty: z.string() }).refine((k) => !('d' in k) && !('k' in k), 'AUTH_JWKS must contain public keys only'),
    )
    .min(1, 'AUTH_JWKS has no keys'),
})
export type JwksDocument = z.infer<typeof Jwks>

const RawConfig = z
  .object({
    AUTH_ISSUER: z.string({ error: 'AUTH_ISSUER is required' }).trim().min(1, 'AUTH_ISSUER is required'),
    AUTH_AUDIENCE: httpsUrl('AUTH_AUDIENCE'),
    AUTH_JWKS_URL: optionalText.pipe(httpsUrl('AUTH_JWKS_URL').optional()),
    AUTH_JWKS: optionalText,
    AUTH_ALGORITHMS: optionalText,
    ALLOWED_ORIGINS: optionalText,
    MAX_BODY_BYTES: optionalText,
    ALERT_WEBHOOK_URL: optionalText.pipe(httpsUrl('ALERT_WEBHOOK_URL').optional()),
    ALERT_WEBHOOK_SECRET: optionalText,
    AUDIT_RETENTION_DAYS: optionalText,
    AUTH_REQUIRE_AT_JWT: optionalText,
    AUTH_JWKS_COOLDOWN_SECONDS: optionalText,
    AUTH_JWKS_CACHE_SECONDS: optionalText,
    LOG_LEVEL: optionalText,
    AUTH_DPOP: optionalText,
    UPSTASH_REDIS_REST_URL: optionalText.pipe(httpsUrl('UPSTASH_REDIS_REST_URL').optional()),
    UPSTASH_REDIS_REST_TOKEN: optionalText,
    RATE_LIMIT_FAIL_MODE: optionalText,
    AUDIT_CHAINS: optionalText,
    LIMIT_SHARDS: optionalText,
    AUTH_PRESET: optionalText,
    AUTH_SCOPE_CLAIMS: optionalText,
    AUTH_ROLE_CLAIMS: optionalText,
    AUTH_ROLE_MAP: optionalText,
    AUTH_EXTRA_AUDIENCES: optionalText,
    AUTH_INTROSPECTION_URL: optionalText.pipe(httpsUrl('AUTH_INTROSPECTION_URL').optional()),
    AUTH_INTROSPECTION_CLIENT_ID: optionalText,
    AUTH_INTROSPECTION_CLIENT_SECRET: optionalText,
    AUTH_INTROSPECTION_CACHE_SECONDS: optionalText,
    AUTH_INTROSPECTION_TIMEOUT_MS: optionalText,
    AUTH_INTROSPECTION_RATE: optionalText,
    ROW_SCOPE: optionalText,
    ROW_SCOPE_EXEMPT_ROLES: optionalText,
    CONFIRM_STATE_KEY: optionalText,
    CONFIRM_TTL_SECONDS: optionalText,
  })
  .loose()

export interface Config {
  issuer: string
  audience: string
  /** The RFC 9728 metadata URL for AUTH_AUDIENCE (path-suffixed form). */
  resourceMetadataUrl: string
  /** AUTH_AUDIENCE first, then AUTH_EXTRA_AUDIENCES: a token's `aud` must name one of them. */
  audiences: string[]
  /**
   * Remote: AUTH_JWKS_URL with AUTH_JWKS_COOLDOWN_SECONDS (default 30) and AUTH_JWKS_CACHE_SECONDS (default 600).
   * Absent when only introspection is configured.
   */
  jwks: { kind: 'remote'; url: URL; cooldownSeconds: number; cacheSeconds: number } | { kind: 'local'; document: JwksDocument } | undefined
  /** AUTH_PRESET, AUTH_SCOPE_CLAIMS, AUTH_ROLE_CLAIMS, AUTH_ROLE_MAP: where scopes and roles come from. */
  claims: ClaimMapping
  /** AUTH_INTROSPECTION_*: RFC 7662 introspection of opaque access tokens. */
  introspection: Introspection | undefined
  algorithms: string[]
  allowedOrigins: ReadonlySet<string>
  maxBodyBytes: number
  alertWebhook: { url: string; secret: string } | undefined
  auditRetentionDays: number
  /** AUTH_REQUIRE_AT_JWT: access tokens must carry `typ: at+jwt` (RFC 9068). */
  requireAtJwt: boolean
  /** LOG_LEVEL: lines below it are not written. */
  logLevel: LogLevel
  /** AUTH_DPOP (README "DPoP"): whether DPoP-bound tokens and proofs are accepted, or required. */
  dpop: DpopMode
  /** Where rate windows and leases live: Upstash Redis when both UPSTASH_* are set, else the embedded Durable Object. */
  limitStore: { kind: 'embedded' } | { kind: 'upstash'; url: string; token: string }
  /** RATE_LIMIT_FAIL_MODE: what an unreachable limit store means ('closed': 503). */
  rateLimitFailMode: 'closed' | 'open'
  /** AUDIT_CHAINS: independent audit chains callers are spread over by `sub` (1..MAX_AUDIT_CHAINS). */
  auditChains: number
  /** LIMIT_SHARDS: limiter objects (embedded backend) subjects are spread over by `sub` (1..MAX_LIMIT_SHARDS). */
  limitShards: number
  /** ROW_SCOPE, ROW_SCOPE_EXEMPT_ROLES (policy/row-scope.ts): the rows each caller may read. */
  rowScope: RowScope
  /**
   * CONFIRM_STATE_KEY (at least 32 characters), CONFIRM_TTL_SECONDS (default
   * 120): the HMAC key of confirmation request states and how long one stays
   * valid (mcp/confirm.ts). Unset key: calls the policy says need a
   * confirmation are refused.
   */
  confirm: { key: string; ttlSeconds: number } | undefined
}

/** The shortest CONFIRM_STATE_KEY accepted: 256 bits of HMAC key. */
const MIN_CONFIRM_KEY_LENGTH = 32
/** The longest CONFIRM_TTL_SECONDS: a 2025-era question holds its call's concurrency lease this long (middleware/limits.ts). */
export const MAX_CONFIRM_TTL_SECONDS = 300

interface Introspection {
  url: URL
  clientId: string
  clientSecret: string
  /** AUTH_INTROSPECTION_CACHE_SECONDS, default 60. */
  cacheSeconds: number
  /** AUTH_INTROSPECTION_TIMEOUT_MS, default 3000. */
  timeoutMs: number
  /** AUTH_INTROSPECTION_RATE, default 50: introspections of uncached tokens per second per isolate. */
  ratePerSecond: number
}

export const DPOP_MODES = ['off', 'allowed', 'required'] as const
export type DpopMode = (typeof DPOP_MODES)[number]

export const MAX_AUDIT_CHAINS = 256
export const MAX_LIMIT_SHARDS = 256
/** Limiter shards when LIMIT_SHARDS is unset. */
export const DEFAULT_LIMIT_SHARDS = 8

export type ConfigResult = { ok: true; config: Config } | { ok: false; setting: string; problem: string }

function fail(setting: string, problem: string): ConfigResult {
  return { ok: false, setting, problem }
}

/** A comma list, trimmed, empty entries dropped. */
function commaList(value: string | undefined): string[] {
  return (value ?? '').split(',').map((v) => v.trim()).filter(Boolean)
}

type Parsed<T> = { ok: true; value: T } | { ok: false; setting: string; problem: string }

function claimPaths(setting: string, text: string): Parsed<ClaimPath[]> {
  const paths: ClaimPath[] = []
  for (const entry of commaList(text)) {
    const path = parseClaimPath(entry)
    if (!path) return { ok: false, setting, problem: `"${entry}" is not a claim path such as scp or realm_access.roles` }
    paths.push(path)
  }
  return { ok: true, value: paths }
}

/** AUTH_PRESET + AUTH_SCOPE_CLAIMS + AUTH_ROLE_CLAIMS + AUTH_ROLE_MAP. */
function claimMapping(raw: { AUTH_PRESET?: string | undefined; AUTH_SCOPE_CLAIMS?: string | undefined; AUTH_ROLE_CLAIMS?: string | undefined; AUTH_ROLE_MAP?: string | undefined }): Parsed<ClaimMapping> {
  const presetName = raw.AUTH_PRESET?.toLowerCase()
  if (presetName !== undefined && !(PRESET_NAMES as readonly string[]).includes(presetName)) {
    return { ok: false, setting: 'AUTH_PRESET', problem: `must be one of ${PRESET_NAMES.join(', ')}` }
  }
  const preset = PRESETS[(presetName as PresetName | undefined) ?? 'native']
  const scopeClaims = claimPaths('AUTH_SCOPE_CLAIMS', raw.AUTH_SCOPE_CLAIMS ?? preset.scopeClaims)
  if (!scopeClaims.ok) return scopeClaims
  if (scopeClaims.value.length === 0) return { ok: false, setting: 'AUTH_SCOPE_CLAIMS', problem: 'names no claim' }
  const roleText = raw.AUTH_ROLE_CLAIMS ?? preset.roleClaims
  const roleClaims = roleText.toLowerCase() === 'none' ? ({ ok: true, value: [] } as const) : claimPaths('AUTH_ROLE_CLAIMS', roleText)
  if (!roleClaims.ok) return roleClaims
  const overlap = roleClaims.value.find((r) => scopeClaims.value.some((s) => formatClaimPath(s) === formatClaimPath(r)))
  if (overlap) return { ok: false, setting: 'AUTH_ROLE_CLAIMS', problem: `${formatClaimPath(overlap)} is also a scope claim` }
  let roleMap: Map<string, string> | undefined
  if (raw.AUTH_ROLE_MAP !== undefined) {
    roleMap = new Map()
    for (const entry of commaList(raw.AUTH_ROLE_MAP)) {
      const at = entry.lastIndexOf('=')
      const name = entry.slice(0, at).trim()
      const role = entry.slice(at + 1).trim()
      if (at <= 0 || !name || !role) return { ok: false, setting: 'AUTH_ROLE_MAP', problem: `"${entry}" is not idp-name=policy-role` }
      if (!POLICY.roles.has(role)) return { ok: false, setting: 'AUTH_ROLE_MAP', problem: `${name} maps to "${role}", which is not a policy role (${[...POLICY.roles.keys()].join(', ')})` }
      if (roleMap.has(name)) return { ok: false, setting: 'AUTH_ROLE_MAP', problem: `${name} is mapped twice` }
      roleMap.set(name, role)
    }
    if (roleMap.size === 0) return { ok: false, setting: 'AUTH_ROLE_MAP', problem: 'maps no name' }
    if (roleClaims.value.length === 0) return { ok: false, setting: 'AUTH_ROLE_MAP', problem: 'is set but AUTH_ROLE_CLAIMS names no claim to read roles from' }
  } else {
    // An IdP's groups and realm roles belong to the whole organisation: one
    // that happens to be called `admin` must not become this server's admin.
    const foreign = roleClaims.value.find((p) => formatClaimPath(p) !== 'role')
    if (foreign) {
      return { ok: false, setting: 'AUTH_ROLE_MAP', problem: `is required when roles come from ${formatClaimPath(foreign)} (map the IdP names you trust, e.g. MCP.Editor=editor), or set AUTH_ROLE_CLAIMS=none` }
    }
  }
  return { ok: true, value: { scopeClaims: scopeClaims.value, roleClaims: roleClaims.value, roleMap, preset: (presetName as PresetName | undefined) ?? 'native' } }
}

function positiveInt(value: string | undefined, fallback: number): number | undefined {
  if (value === undefined) return fallback
  if (!/^\d+$/.test(value)) return undefined
  const n = Number(value)
  return Number.isSafeInteger(n) && n > 0 ? n : undefined
}

/** The origin of a URL-ish string, or undefined when it is not one. */
export function normalizeOrigin(value: string): string | undefined {
  if (!URL.canParse(value)) return undefined
  const origin = new URL(value).origin
  return origin === 'null' ? undefined : origin
}

/** RFC 9728 §3.1: insert the well-known segment between host and path. */
export function resourceMetadataUrlFor(resource: string): string {
  const u = new URL(resource)
  const path = u.pathname === '/' ? '' : u.pathname
  return `${u.origin}/.well-known/oauth-protected-resource${path}`
}

export function parseConfig(bindings: Record<string, unknown>): ConfigResult {
  const parsed = RawConfig.safeParse(bindings)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const setting = String(issue.path[0] ?? 'configuration')
    return fail(setting, issue.message)
  }
  const raw = parsed.data

  let jwks: Config['jwks']
  if (raw.AUTH_JWKS_URL && raw.AUTH_JWKS) return fail('AUTH_JWKS_URL', 'set at most one of AUTH_JWKS_URL and AUTH_JWKS, not both')
  if (raw.AUTH_JWKS_URL) {
    // An unknown kid (or a failed fetch) refetches the JWKS at most once per cooldown.
    const cooldownSeconds = positiveInt(raw.AUTH_JWKS_COOLDOWN_SECONDS, 30)
    if (cooldownSeconds === undefined) return fail('AUTH_JWKS_COOLDOWN_SECONDS', 'must be a positive integer number of seconds')
    const cacheSeconds = positiveInt(raw.AUTH_JWKS_CACHE_SECONDS, 600)
    if (cacheSeconds === undefined || cacheSeconds < cooldownSeconds) return fail('AUTH_JWKS_CACHE_SECONDS', 'must be a positive integer number of seconds, at least AUTH_JWKS_COOLDOWN_SECONDS')
    jwks = { kind: 'remote', url: new URL(raw.AUTH_JWKS_URL), cooldownSeconds, cacheSeconds }
  } else if (raw.AUTH_JWKS) {
    let json: unknown
    try {
      json = JSON.parse(raw.AUTH_JWKS)
    } catch {
      return fail('AUTH_JWKS', 'is not valid JSON')
    }
    const doc = Jwks.safeParse(json)
    if (!doc.success) return fail('AUTH_JWKS', doc.error.issues[0]!.message)
    jwks = { kind: 'local', document: doc.data }
  } else if (!raw.AUTH_INTROSPECTION_URL) {
    return fail('AUTH_JWKS_URL', 'set one of AUTH_JWKS_URL and AUTH_JWKS, or AUTH_INTROSPECTION_URL for opaque tokens')
  }

  let introspection: Introspection | undefined
  if (raw.AUTH_INTROSPECTION_URL) {
    if (!raw.AUTH_INTROSPECTION_CLIENT_ID) return fail('AUTH_INTROSPECTION_CLIENT_ID', 'is required when AUTH_INTROSPECTION_URL is set')
    if (!raw.AUTH_INTROSPECTION_CLIENT_SECRET) return fail('AUTH_INTROSPECTION_CLIENT_SECRET', 'is required when AUTH_INTROSPECTION_URL is set')
    const cacheSeconds = positiveInt(raw.AUTH_INTROSPECTION_CACHE_SECONDS, 60)
    if (cacheSeconds === undefined || cacheSeconds > 3600) return fail('AUTH_INTROSPECTION_CACHE_SECONDS', 'must be an integer number of seconds from 1 to 3600')
    const timeoutMs = positiveInt(raw.AUTH_INTROSPECTION_TIMEOUT_MS, 3000)
    if (timeoutMs === undefined || timeoutMs > 30_000) return fail('AUTH_INTROSPECTION_TIMEOUT_MS', 'must be an integer number of milliseconds from 1 to 30000')
    const ratePerSecond = positiveInt(raw.AUTH_INTROSPECTION_RATE, 50)
    if (ratePerSecond === undefined || ratePerSecond > 1000) return fail('AUTH_INTROSPECTION_RATE', 'must be an integer number of requests per second from 1 to 1000')
    introspection = { url: new URL(raw.AUTH_INTROSPECTION_URL), clientId: raw.AUTH_INTROSPECTION_CLIENT_ID, clientSecret: raw.AUTH_INTROSPECTION_CLIENT_SECRET, cacheSeconds, timeoutMs, ratePerSecond }
  } else {
    for (const name of ['AUTH_INTROSPECTION_CLIENT_ID', 'AUTH_INTROSPECTION_CLIENT_SECRET', 'AUTH_INTROSPECTION_CACHE_SECONDS', 'AUTH_INTROSPECTION_TIMEOUT_MS', 'AUTH_INTROSPECTION_RATE'] as const) {
      if (raw[name] !== undefined) return fail(name, 'is set but AUTH_INTROSPECTION_URL is not')
    }
  }

  const claims = claimMapping(raw)
  if (!claims.ok) return fail(claims.setting, claims.problem)
  let rowScope: RowScope
  try {
    rowScope = parseRowScope(raw.ROW_SCOPE, raw.ROW_SCOPE_EXEMPT_ROLES, new Set(POLICY.roles.keys()))
  } catch (error) {
    if (error instanceof RowScopeError) return fail(error.setting, error.problem)
    throw error
  }
  // the claims the principal keeps: those the row scope and the declared tools' bound parameters read
  const boundClaims = [...new Set([...scopeClaims(rowScope), ...declaredClaims(DECLARED_TOOLS)])].filter((c) => c !== 'sub').map((c) => parseClaimPath(c)!)
  const audiences = [raw.AUTH_AUDIENCE]
  for (const entry of commaList(raw.AUTH_EXTRA_AUDIENCES)) if (!audiences.includes(entry)) audiences.push(entry)

  const algorithms = commaList(raw.AUTH_ALGORITHMS ?? 'RS256,ES256,EdDSA')
  if (algorithms.length === 0) return fail('AUTH_ALGORITHMS', 'lists no algorithm')
  for (const alg of algorithms) {
    if (FORBIDDEN_ALGORITHM.test(alg)) return fail('AUTH_ALGORITHMS', `${alg} is never accepted (none and HS* are refused)`)
    if (!(SUPPORTED_ALGORITHMS as readonly string[]).includes(alg)) return fail('AUTH_ALGORITHMS', `${alg} is not a supported JWS algorithm`)
  }

  // The server's own origin (from AUTH_AUDIENCE, never from the Host header,
  // which a rebinding attacker controls) is always allowed: a same-origin page.
  const allowedOrigins = new Set<string>([new URL(raw.AUTH_AUDIENCE).origin])
  for (const entry of commaList(raw.ALLOWED_ORIGINS)) {
    const origin = normalizeOrigin(entry)
    if (!origin) return fail('ALLOWED_ORIGINS', `"${entry}" is not an origin such as https://app.example.com`)
    allowedOrigins.add(origin)
  }

  const maxBodyBytes = positiveInt(raw.MAX_BODY_BYTES, 262_144)
  if (maxBodyBytes === undefined) return fail('MAX_BODY_BYTES', 'must be a positive integer number of bytes')

  const auditRetentionDays = positiveInt(raw.AUDIT_RETENTION_DAYS, 90)
  if (auditRetentionDays === undefined) return fail('AUDIT_RETENTION_DAYS', 'must be a positive integer number of days')

  // AUTH_REQUIRE_AT_JWT: "true" or "false" only; anything else is a typo, not a default.
  const requireAtJwtText = raw.AUTH_REQUIRE_AT_JWT?.toLowerCase() ?? 'false'
  if (requireAtJwtText !== 'true' && requireAtJwtText !== 'false') return fail('AUTH_REQUIRE_AT_JWT', 'must be true or false')
  const requireAtJwt = requireAtJwtText === 'true'
  const logLevel = (raw.LOG_LEVEL ?? 'info').toLowerCase()
  if (!isLogLevel(logLevel)) return fail('LOG_LEVEL', 'must be one of debug, info, warn, error')

  const dpop = (raw.AUTH_DPOP ?? 'allowed').toLowerCase()
  if (!(DPOP_MODES as readonly string[]).includes(dpop)) return fail('AUTH_DPOP', 'must be one of off, allowed, required')
  const auditChains = positiveInt(raw.AUDIT_CHAINS, 1)
  if (auditChains === undefined || auditChains < 1 || auditChains > MAX_AUDIT_CHAINS) {
    return fail('AUDIT_CHAINS', `must be an integer from 1 to ${MAX_AUDIT_CHAINS}`)
  }
  const limitShards = positiveInt(raw.LIMIT_SHARDS, DEFAULT_LIMIT_SHARDS)
  if (limitShards === undefined || limitShards < 1 || limitShards > MAX_LIMIT_SHARDS) {
    return fail('LIMIT_SHARDS', `must be an integer from 1 to ${MAX_LIMIT_SHARDS}`)
  }

  if (raw.ALERT_WEBHOOK_URL && !raw.ALERT_WEBHOOK_SECRET) {
    return fail('ALERT_WEBHOOK_SECRET', 'is required when ALERT_WEBHOOK_URL is set (alerts are always signed)')
  }

  // Limits: both Upstash settings or neither (half a configuration is a typo, not "use the embedded store").
  if (raw.UPSTASH_REDIS_REST_URL && !raw.UPSTASH_REDIS_REST_TOKEN) return fail('UPSTASH_REDIS_REST_TOKEN', 'is required when UPSTASH_REDIS_REST_URL is set')
  if (raw.UPSTASH_REDIS_REST_TOKEN && !raw.UPSTASH_REDIS_REST_URL) return fail('UPSTASH_REDIS_REST_URL', 'is required when UPSTASH_REDIS_REST_TOKEN is set')
  const limitStore: Config['limitStore'] = raw.UPSTASH_REDIS_REST_URL
    ? { kind: 'upstash', url: raw.UPSTASH_REDIS_REST_URL, token: raw.UPSTASH_REDIS_REST_TOKEN! }
    : { kind: 'embedded' }
  const rateLimitFailMode = (raw.RATE_LIMIT_FAIL_MODE ?? 'closed').toLowerCase()
  if (rateLimitFailMode !== 'closed' && rateLimitFailMode !== 'open') return fail('RATE_LIMIT_FAIL_MODE', 'must be closed or open')
  if (raw.CONFIRM_STATE_KEY !== undefined && raw.CONFIRM_STATE_KEY.length < MIN_CONFIRM_KEY_LENGTH) {
    return fail('CONFIRM_STATE_KEY', `must be at least ${MIN_CONFIRM_KEY_LENGTH} characters (a random secret: openssl rand -base64 32)`)
  }
  const confirmTtl = positiveInt(raw.CONFIRM_TTL_SECONDS, 120)
  if (confirmTtl === undefined || confirmTtl > MAX_CONFIRM_TTL_SECONDS) return fail('CONFIRM_TTL_SECONDS', `must be an integer from 1 to ${MAX_CONFIRM_TTL_SECONDS}`)

  return {
    ok: true,
    config: {
      issuer: raw.AUTH_ISSUER,
      audience: raw.AUTH_AUDIENCE,
      resourceMetadataUrl: resourceMetadataUrlFor(raw.AUTH_AUDIENCE),
      audiences,
      jwks,
      claims: { ...claims.value, boundClaims },
      introspection,
      algorithms,
      allowedOrigins,
      maxBodyBytes,
      alertWebhook: raw.ALERT_WEBHOOK_URL ? { url: raw.ALERT_WEBHOOK_URL, secret: raw.ALERT_WEBHOOK_SECRET! } : undefined,
      auditRetentionDays,
      requireAtJwt,
      logLevel,
      dpop: dpop as DpopMode,
      limitStore,
      rateLimitFailMode,
      auditChains,
      limitShards,
      rowScope,
      confirm: raw.CONFIRM_STATE_KEY === undefined ? undefined : { key: raw.CONFIRM_STATE_KEY, ttlSeconds: confirmTtl },
    },
  }
}
