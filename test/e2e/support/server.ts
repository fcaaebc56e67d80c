// Starts the real server the way the README does — `npm run dev` — in a fresh
// temporary BASTION_DEV_DIR (keys, vars and local D1 all inside it) on free
// loopback ports, as its own process group, and stops the whole group again.
// One server per test file: `const server = await startDevServer()` in
// beforeAll, `await server?.stop()` in afterAll.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { DevEnv } from '../../../scripts/lib/dev-env.ts'
import { ROOT } from '../../../scripts/lib/dev-env.ts'
import { mintDevToken } from '../../../scripts/token.ts'

export type Role = 'read-only' | 'editor' | 'admin'

export interface TokenOptions {
  role?: Role
  sub?: string
  scope?: string
  ttlSeconds?: number
}

export interface DevServer {
  /** http://127.0.0.1:<port> */
  url: string
  /** http://127.0.0.1:<port>/mcp (the token audience) */
  mcpUrl: string
  env: DevEnv
  /** A development token this server accepts. */
  token(opts: Role | TokenOptions): Promise<string>
  /** Everything the process group printed so far. */
  output(): string
  /** Kills the process group, waits until it is gone, removes the temp dir. */
  stop(): Promise<void>
}

const READY_TIMEOUT_MS = 90_000
const STOP_TIMEOUT_MS = 10_000
const MAX_OUTPUT_CHARS = 200_000

/** Collects what a child process prints (stdout and stderr), keeping the last `maxChars`. */
export function captureOutput(child: { stdout: NodeJS.ReadableStream | null; stderr: NodeJS.ReadableStream | null }, maxChars: number): () => string {
  let captured = ''
  const capture = (chunk: Buffer | string) => {
    captured += chunk.toString()
    if (captured.length > maxChars) captured = captured.slice(-maxChars)
  }
  child.stdout?.on('data', capture)
  child.stderr?.on('data', capture)
  return () => captured
}

/** Free loopback ports: all bound at once (so they differ), then released. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    const ports: number[] = []
    for (let i = 0; i < count; i++) {
      const server = createServer()
      servers.push(server)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(0, '127.0.0.1', resolve)
      })
      const address = server.address()
      if (address === null || typeof address === 'string') throw new Error('could not read a bound port')
      ports.push(address.port)
    }
    return ports
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
  }
}

/** True while any process of the group still exists. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal)
  } catch {
    // already gone
  }
}

export async function killGroup(pgid: number): Promise<void> {
  signalGroup(pgid, 'SIGTERM')
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(100)
  if (groupAlive(pgid)) {
    signalGroup(pgid, 'SIGKILL')
    while (groupAlive(pgid)) await sleep(50)
  }
}

// Last line of defence: a worker that exits without afterAll still takes its
// servers down (synchronously, the only thing an 'exit' handler can do).
export const liveGroups = new Set<number>()
process.once('exit', () => {
  for (const pgid of liveGroups) signalGroup(pgid, 'SIGKILL')
})

async function waitForHealth(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  let last = 'no answer yet'
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`npm run dev exited (${child.exitCode ?? child.signalCode}) before ${url}/healthz answered\n--- output ---\n${output()}`)
    }
    try {
      const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) })
      if (response.status === 200) return
      last = `HTTP ${response.status}`
    } catch (error) {
      last = error instanceof Error ? error.message : String(error)
    }
    await sleep(250)
  }
  throw new Error(`${url}/healthz did not answer 200 within ${READY_TIMEOUT_MS / 1000} s (last: ${last})\n--- output ---\n${output()}`)
}

/**
 * `vars`: optional Worker settings (e.g. ALERT_WEBHOOK_URL), passed the way a
 * developer would: in the shell. `conformance`: `npm run dev -- --conformance`
 * (the conformance suite's fixtures).
 */
export async function startDevServer(opts: { vars?: Record<string, string>; conformance?: boolean } = {}): Promise<DevServer> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-e2e-'))
  const [port, inspectorPort] = (await freePorts(2)) as [number, number]
  const origin = `http://127.0.0.1:${port}`
  // The same environment scripts/lib/dev-env.ts derives from BASTION_DEV_DIR and PORT.
  const env: DevEnv = {
    dir,
    isDefault: false,
    port,
    origin,
    issuer: origin,
    audience: `${origin}/mcp`,
    persistTo: join(dir, 'state'),
  }

  const child = spawn('npm', ['run', 'dev', ...(opts.conformance ? ['--', '--conformance'] : [])], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      ...opts.vars,
      BASTION_DEV_DIR: dir,
      PORT: String(port),
      INSPECTOR_PORT: String(inspectorPort),
      WRANGLER_SEND_METRICS: 'false',
      NO_COLOR: '1',
    },
  })
  const pgid = child.pid
  if (pgid === undefined) throw new Error('npm run dev could not be started')
  liveGroups.add(pgid)

  const captured = captureOutput(child, MAX_OUTPUT_CHARS)

  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await killGroup(pgid)
      liveGroups.delete(pgid)
      rmSync(dir, { recursive: true, force: true })
    })())

  try {
    await waitForHealth(origin, child, captured)
  } catch (error) {
    await stop()
    throw error
  }

  return {
    url: origin,
    mcpUrl: env.audience,
    env,
    token: (opts) => mintDevToken({ ...(typeof opts === 'string' ? { role: opts } : opts), env }),
    output: captured,
    stop,
  }
}
