// A real redis-server (Debian's package) for tests and `npm run dev -- --upstash`:
// started on a free loopback port in its own process group (setsid semantics
// via `detached: true`), no persistence, stopped by its own process-group id.
import { spawn, spawnSync } from 'node:child_process'
import { connect, createServer } from 'node:net'

export interface RedisServer {
  port: number
  stop(): Promise<void>
}

/** The redis-server binary, or undefined when it is not installed. */
export function redisServerBinary(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' })
  const path = found.stdout.trim()
  return found.status === 0 && path !== '' ? path : undefined
}

/** A loopback port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('could not read a bound port')
  return address.port
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('error', () => resolve(false))
    socket.once('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'))
    socket.once('data', (data) => {
      socket.destroy()
      resolve(data.toString().startsWith('+PONG'))
    })
  })
}

export async function startRedis(binary = redisServerBinary()): Promise<RedisServer> {
  if (binary === undefined) throw new Error('redis-server is not installed (Debian: apt-get install -y redis-server)')
  const port = await freePort()
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--loglevel', 'warning'], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const pgid = child.pid
  if (pgid === undefined) throw new Error('redis-server did not start')
  child.unref()
  let exited = false
  child.once('exit', () => {
    exited = true
  })
  const stop = async () => {
    if (exited) return
    try {
      process.kill(-pgid, 'SIGTERM')
    } catch {
      return
    }
    for (let i = 0; i < 50 && !exited; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    if (!exited) {
      try {
        process.kill(-pgid, 'SIGKILL')
      } catch {
        /* already gone */
      }
    }
  }
  for (let i = 0; i < 250; i++) {
    if (exited) throw new Error(`redis-server exited before it answered on port ${port}`)
    if (await answersPing(port)) return { port, stop }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await stop()
  throw new Error(`redis-server did not answer on port ${port}`)
}
