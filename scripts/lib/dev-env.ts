// Where the local development environment lives, shared by `npm run dev`,
// `npm run token`, `npm run db:init` and the e2e tests.
//
//   BASTION_DEV_DIR  folder for the key pair and local state (default .dev/,
//                    git-ignored); the default setup also writes .dev.vars
//   PORT             port of `wrangler dev` (default 8787)
//
// The private key never leaves that folder and is never committed.
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { exportJWK, generateKeyPair, type JWK } from 'jose'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const WRANGLER = join(ROOT, 'node_modules', '.bin', 'wrangler')

export interface DevEnv {
  dir: string
  /** true for the default .dev/ folder: state in .wrangler/, vars in .dev.vars */
  isDefault: boolean
  port: number
  origin: string
  issuer: string
  audience: string
  /** `--persist-to` argument for wrangler, when not the default location. */
  persistTo: string | undefined
}

export function devEnv(): DevEnv {
  const custom = process.env['BASTION_DEV_DIR']
  const dir = resolve(ROOT, custom ?? '.dev')
  const port = Number(process.env['PORT'] ?? 8787)
  const origin = `http://127.0.0.1:${port}`
  return {
    dir,
    isDefault: custom === undefined,
    port,
    origin,
    issuer: origin,
    audience: `${origin}/mcp`,
    persistTo: custom === undefined ? undefined : join(dir, 'state'),
  }
}

export interface DevKeys {
  privateJwk: JWK & { kid: string; alg: string }
  publicJwks: { keys: JWK[] }
}

/** Creates the ES256 development key pair once; later calls reuse it. */
export async function ensureKeys(env: DevEnv): Promise<DevKeys> {
  const file = join(env.dir, 'signing-key.json')
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DevKeys
  mkdirSync(env.dir, { recursive: true })
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const kid = `dev-${new Date().toISOString().slice(0, 10)}-${Math.random().toString(36).slice(2, 8)}`
  const keys: DevKeys = {
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES256' },
    publicJwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] },
  }
  writeFileSync(file, JSON.stringify(keys, null, 2) + '\n', { mode: 0o600 })
  return keys
}

/** Optional settings a developer may set in the shell to override the dev defaults. */
export const OVERRIDABLE_SETTINGS = [
  'ALLOWED_ORIGINS', 'ALERT_WEBHOOK_URL', 'ALERT_WEBHOOK_SECRET', 'AUDIT_RETENTION_DAYS', 'AUDIT_CHAINS', 'LIMIT_SHARDS', 'MAX_BODY_BYTES',
  'AUTH_ALGORITHMS', 'AUTH_DPOP', 'AUTH_JWKS_COOLDOWN_SECONDS',
  'AUTH_PRESET', 'AUTH_SCOPE_CLAIMS', 'AUTH_ROLE_CLAIMS', 'AUTH_ROLE_MAP', 'AUTH_EXTRA_AUDIENCES',
  'AUTH_INTROSPECTION_CLIENT_ID', 'AUTH_INTROSPECTION_CLIENT_SECRET', 'AUTH_INTROSPECTION_CACHE_SECONDS', 'AUTH_INTROSPECTION_TIMEOUT_MS', 'AUTH_INTROSPECTION_RATE',
  'CONFIRM_STATE_KEY', 'CONFIRM_TTL_SECONDS',
] as const

/** The Worker settings for local development (public key only). */
export function devVars(env: DevEnv, keys: DevKeys, shell: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const vars: Record<string, string> = {
    AUTH_ISSUER: env.issuer,
    AUTH_AUDIENCE: env.audience,
    AUTH_JWKS: JSON.stringify(keys.publicJwks),
    // The MCP Inspector's web UI, so it can connect from a browser.
    ALLOWED_ORIGINS: 'http://localhost:6274,http://127.0.0.1:6274',
    // Fresh per start: confirmations pending across a restart are refused as not verifying.
    CONFIRM_STATE_KEY: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url'),
  }
  for (const name of OVERRIDABLE_SETTINGS) {
    const value = shell[name]
    if (value !== undefined) vars[name] = value
  }
  // Your own identity provider instead of the development key: AUTH_ISSUER with
  // AUTH_JWKS_URL and/or AUTH_INTROSPECTION_URL from the shell replace the
  // issuer and the inline AUTH_JWKS (`npm run token` tokens are then refused;
  // get tokens from that provider).
  const own = (['AUTH_JWKS_URL', 'AUTH_INTROSPECTION_URL'] as const).filter((name) => shell[name] !== undefined)
  if (own.length > 0) {
    if (shell['AUTH_ISSUER'] === undefined) throw new Error(`${own[0]} is set without AUTH_ISSUER: set both to use your own identity provider`)
    delete vars['AUTH_JWKS']
    vars['AUTH_ISSUER'] = shell['AUTH_ISSUER']
    for (const name of own) vars[name] = shell[name]!
  }
  return vars
}

export function writeDevVars(env: DevEnv, vars: Record<string, string>): string {
  const file = env.isDefault ? join(ROOT, '.dev.vars') : join(env.dir, 'dev.vars')
  const text = Object.entries(vars)
    .map(([k, v]) => {
      // Single quotes: dotenv takes the value literally (JSON keeps its double quotes).
      if (v.includes("'") || v.includes('\n')) throw new Error(`${k} cannot be written to a dotenv file`)
      return `${k}='${v}'`
    })
    .join('\n')
  writeFileSync(file, `# Written by scripts/dev.ts for local development. Git-ignored; never holds the private signing key.\n${text}\n`)
  return file
}

/** Runs wrangler with metrics off; resolves on exit 0, rejects otherwise. */
export function wrangler(args: string[], opts: { quiet?: boolean } = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(WRANGLER, args, {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('close', (code) => {
      if (code === 0) {
        if (!opts.quiet) process.stdout.write(out)
        resolvePromise(out)
      } else reject(new Error(`wrangler ${args.join(' ')} exited ${code}\n${out}\n${err}`))
    })
  })
}

/** migrations/*.sql in the order wrangler applies them (by name), as absolute paths. */
export function migrationFiles(): string[] {
  const dir = join(ROOT, 'migrations')
  return readdirSync(dir).filter((f) => f.endsWith('.sql')).sort().map((f) => join(dir, f))
}

export function persistArgs(env: DevEnv): string[] {
  return env.persistTo ? ['--persist-to', env.persistTo] : []
}
