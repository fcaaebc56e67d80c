// npm run token -- --role editor [--sub alice] [--scope "orders:read …"] [--ttl 1h]
// Prints a development access token that `npm run dev` accepts, signed with
// the local key pair (created by `npm run dev`, or here if missing).
import { parseArgs } from 'node:util'
import { importJWK, SignJWT } from 'jose'
import { devEnv, ensureKeys } from './lib/dev-env.ts'

export function parseTtl(text: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(text.trim())
  if (!m) throw new Error(`--ttl "${text}" is not a duration like 90s, 15m, 1h or 7d`)
  const n = Number(m[1])
  return n * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd']
}

export async function mintDevToken(opts: { role?: string; sub?: string; scope?: string; ttlSeconds?: number; env?: ReturnType<typeof devEnv> }): Promise<string> {
  const env = opts.env ?? devEnv()
  const keys = await ensureKeys(env)
  const key = await importJWK(keys.privateJwk, keys.privateJwk.alg)
  const claims: Record<string, string> = {}
  if (opts.role) claims['role'] = opts.role
  if (opts.scope) claims['scope'] = opts.scope
  return new SignJWT(claims)
    .setProtectedHeader({ alg: keys.privateJwk.alg, kid: keys.privateJwk.kid, typ: 'at+jwt' })
    .setIssuer(env.issuer)
    .setAudience(env.audience)
    .setSubject(opts.sub ?? `dev-${opts.role ?? 'user'}`)
    .setIssuedAt()
    .setJti(crypto.randomUUID())
    .setExpirationTime(`${opts.ttlSeconds ?? 3600}s`)
    .sign(key)
}

async function main() {
  const { values } = parseArgs({
    options: { role: { type: 'string' }, sub: { type: 'string' }, scope: { type: 'string' }, ttl: { type: 'string', default: '1h' }, help: { type: 'boolean' } },
  })
  if (values.help || (!values.role && !values.scope)) {
    console.error('usage: npm run token -- --role read-only|editor|admin [--sub NAME] [--scope "s1 s2"] [--ttl 1h]')
    process.exit(values.help ? 0 : 2)
  }
  const token = await mintDevToken({ role: values.role, sub: values.sub, scope: values.scope, ttlSeconds: parseTtl(values.ttl!) })
  process.stdout.write(token + '\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  })
}
