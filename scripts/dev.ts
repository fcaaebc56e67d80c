// npm run dev — one command from a clean clone to a running server:
//   0. checks tools.config.ts (npm run check:tools); a mistake stops here
//   1. creates the development key pair once (private part in .dev/, git-ignored)
//   2. writes .dev.vars (issuer, audience, public JWKS) for http://127.0.0.1:8787
//   3. initialises and seeds the local D1 (idempotent)
//   4. runs `wrangler dev` on 127.0.0.1:8787
// `npm run dev -- --upstash` also starts a local redis-server and the Upstash
// REST proxy in front of it (test/support/), and points the limiter at them
// (UPSTASH_REDIS_REST_URL/TOKEN), so the Upstash backend runs as in production.
// `npm run dev -- --conformance` serves src/conformance/entry.ts instead of
// src/index.ts: the same Worker plus the MCP conformance suite's fixture
// tools (development only; never what `wrangler deploy` bundles).
// Then: `npm run token -- --role admin` prints a token this server accepts.
import { spawn } from 'node:child_process'
import { checkTools } from './check-tools.ts'
import { initLocalDatabase } from './db-init.ts'
import { devEnv, devVars, ensureKeys, persistArgs, ROOT, WRANGLER, writeDevVars } from './lib/dev-env.ts'
import { startLocalUpstash } from './lib/upstash-local.ts'

/** `--upstash`: local Redis + the Upstash REST proxy; returns the wrangler args and a stop function. */
async function localUpstash(): Promise<{ args: string[]; stop(): Promise<void> }> {
  const local = await startLocalUpstash()
  console.log(`limits: Upstash backend via ${local.url} (redis-server on 127.0.0.1:${local.redisPort})`)
  return { args: ['--var', `UPSTASH_REDIS_REST_URL:${local.url}`, '--var', `UPSTASH_REDIS_REST_TOKEN:${local.token}`], stop: local.stop }
}

async function main() {
  const mistakes = await checkTools()
  if (mistakes.length > 0) throw new Error(mistakes.join('\n'))
  const env = devEnv()
  const keys = await ensureKeys(env)
  const vars = devVars(env, keys)
  const varsFile = writeDevVars(env, vars)
  await initLocalDatabase(env)
  const inspectorPort = Number(process.env['INSPECTOR_PORT'] ?? env.port + 10_000)
  const entry = process.argv.includes('--conformance') ? ['src/conformance/entry.ts'] : []
  const args = ['dev', ...entry, '--ip', '127.0.0.1', '--port', String(env.port), '--inspector-port', String(inspectorPort), ...persistArgs(env)]
  // A non-default environment passes its settings explicitly (wrangler reads .dev.vars only from the project root).
  if (!env.isDefault) for (const [k, v] of Object.entries(vars)) args.push('--var', `${k}:${v}`)
  const upstash = process.argv.includes('--upstash') ? await localUpstash() : undefined
  if (upstash) args.push(...upstash.args)
  console.log(`settings in ${varsFile}\nMCP endpoint: ${env.audience}\nmint a token: npm run token -- --role admin`)
  const child = spawn(WRANGLER, args, { cwd: ROOT, stdio: 'inherit', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } })
  const stop = () => child.kill('SIGTERM')
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  child.on('exit', (code) => {
    void (upstash?.stop() ?? Promise.resolve()).finally(() => process.exit(code ?? 0))
  })
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
