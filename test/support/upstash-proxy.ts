// A loopback server speaking the Upstash Redis REST protocol in front of a
// real redis-server, so the production client (`Redis.fromEnv` of
// @upstash/redis, and @upstash/ratelimit on top) runs unchanged in tests and
// in `npm run dev -- --upstash`. Test infrastructure, tested itself
// (test/unit/upstash-proxy.test.ts). It talks RESP2 over node:net with the
// small codec below (no client library: exact control over pipelining and
// MULTI/EXEC on one connection).
//
// The protocol, as @upstash/redis uses it:
//   POST /            body ["CMD", ...args]          → {"result": …} | 400 {"error": "…"}
//   POST /pipeline    body [["CMD", …], …]           → [{"result": …} | {"error": "…"}, …]
//   POST /multi-exec  body [["CMD", …], …]           → same shape; MULTI … EXEC, atomic
//   Authorization: Bearer <token>                    → 401 otherwise
//   Upstash-Encoding: base64                          → every string in a result is base64
//                                                       (nested arrays too), except "OK"
// Traps handled:
//   - @upstash/ratelimit ≥ 2.1 sends scripts starting `#!lua flags=allow-key-locking`,
//     which stock Redis refuses: unknown shebang flags are stripped, and the
//     client's EVALSHA hashes (of the original text) are mapped to the hash
//     of the stripped script that Redis knows.
//   - /multi-exec must be atomic: MULTI, the commands and EXEC are written in
//     one go on one connection, whose replies are matched in order.
// Test hooks: tokens `<token>` or `<token>.<label>` are accepted; requests are
// counted per label (GET /__stats/<label>); `delayMs` holds every answer.
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'

// ---------------------------------------------------------------------------
// RESP2

type Reply = string | number | null | Buffer | RedisReplyError | Reply[]

class RedisReplyError {
  constructor(readonly message: string) {}
}

function encodeCommand(args: readonly (string | number)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (const arg of args) {
    const bytes = Buffer.from(String(arg))
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}

/** Parses one reply at `offset`; undefined when the buffer does not hold it whole yet. */
function parseReply(buf: Buffer, offset: number): { value: Reply; next: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', offset)
  if (lineEnd === -1) return undefined
  const type = String.fromCharCode(buf[offset]!)
  const line = buf.toString('utf8', offset + 1, lineEnd)
  const after = lineEnd + 2
  switch (type) {
    case '+':
      return { value: line, next: after }
    case '-':
      return { value: new RedisReplyError(line), next: after }
    case ':':
      return { value: Number(line), next: after }
    case '$': {
      const len = Number(line)
      if (len === -1) return { value: null, next: after }
      if (buf.length < after + len + 2) return undefined
      return { value: buf.subarray(after, after + len), next: after + len + 2 }
    }
    case '*': {
      const count = Number(line)
      if (count === -1) return { value: null, next: after }
      const items: Reply[] = []
      let next = after
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, next)
        if (item === undefined) return undefined
        items.push(item.value)
        next = item.next
      }
      return { value: items, next }
    }
    default:
      throw new Error(`RESP: unexpected reply type ${JSON.stringify(type)}`)
  }
}

/** One RESP connection; replies are matched to commands in order. */
class RespConnection {
  private buffer = Buffer.alloc(0)
  private readonly waiting: { resolve(r: Reply): void; reject(e: Error): void }[] = []
  private readonly socket: Socket
  private failed: Error | undefined

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1')
    this.socket.setNoDelay(true)
    this.socket.on('data', (chunk) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
      let offset = 0
      for (;;) {
        const parsed = parseReply(this.buffer, offset)
        if (parsed === undefined) break
        offset = parsed.next
        this.waiting.shift()?.resolve(parsed.value)
      }
      this.buffer = this.buffer.subarray(offset)
    })
    const fail = (error: Error) => {
      this.failed = error
      for (const w of this.waiting.splice(0)) w.reject(error)
    }
    this.socket.on('error', fail)
    this.socket.on('close', () => fail(new Error('redis connection closed')))
  }

  /** Writes every command at once (nothing else can interleave) and resolves their replies in order. */
  send(commands: readonly (readonly (string | number)[])[]): Promise<Reply[]> {
    if (this.failed) return Promise.reject(this.failed)
    const replies = commands.map(() => new Promise<Reply>((resolve, reject) => this.waiting.push({ resolve, reject })))
    this.socket.write(Buffer.concat(commands.map(encodeCommand)))
    return Promise.all(replies)
  }

  close(): void {
    this.socket.destroy()
  }
}

// ---------------------------------------------------------------------------
// Scripts: strip unknown shebang flags, map the client's hashes.

const KNOWN_FLAGS = new Set(['no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys'])
const sha1 = (text: string) => createHash('sha1').update(text).digest('hex')

export function stripUnknownShebangFlags(script: string): string {
  const match = /^#!lua(?:[ \t]+flags=([^\r\n]*))?([ \t]*)(\r?\n)/.exec(script)
  if (!match) return script
  const flags = (match[1] ?? '').split(',').map((f) => f.trim()).filter((f) => KNOWN_FLAGS.has(f))
  const shebang = flags.length > 0 ? `#!lua flags=${flags.join(',')}` : '#!lua'
  return shebang + match[3] + script.slice(match[0].length)
}

class ScriptTable {
  /** client sha (of the text it sent) → sha of the text Redis runs. */
  private readonly shas = new Map<string, string>()

  /** Rewrites EVAL / EVALSHA / SCRIPT LOAD so Redis accepts them. */
  rewrite(command: (string | number)[]): { command: (string | number)[]; clientSha?: string } {
    const name = String(command[0] ?? '').toUpperCase()
    if ((name === 'EVAL' || name === 'EVAL_RO') && typeof command[1] === 'string') {
      const original = command[1]
      const stripped = stripUnknownShebangFlags(original)
      if (stripped !== original) this.shas.set(sha1(original), sha1(stripped))
      return { command: [command[0]!, stripped, ...command.slice(2)] }
    }
    if ((name === 'EVALSHA' || name === 'EVALSHA_RO') && command[1] !== undefined) {
      const mapped = this.shas.get(String(command[1]).toLowerCase())
      return { command: mapped ? [command[0]!, mapped, ...command.slice(2)] : command }
    }
    if (name === 'SCRIPT' && String(command[1] ?? '').toUpperCase() === 'LOAD' && typeof command[2] === 'string') {
      const original = command[2]
      const stripped = stripUnknownShebangFlags(original)
      if (stripped !== original) this.shas.set(sha1(original), sha1(stripped))
      return { command: [command[0]!, command[1]!, stripped], clientSha: sha1(original) }
    }
    return { command }
  }
}

// ---------------------------------------------------------------------------
// JSON encoding of replies

function toJson(reply: Reply, base64: boolean): unknown {
  if (reply === null || typeof reply === 'number') return reply
  if (reply instanceof RedisReplyError) return reply.message
  if (Array.isArray(reply)) return reply.map((r) => toJson(r, base64))
  if (typeof reply === 'string') return base64 && reply !== 'OK' ? Buffer.from(reply).toString('base64') : reply
  return base64 ? reply.toString('base64') : reply.toString('utf8')
}

function entry(reply: Reply, base64: boolean, clientSha?: string): { result: unknown } | { error: string } {
  if (reply instanceof RedisReplyError) return { error: reply.message }
  if (clientSha !== undefined && !(reply instanceof RedisReplyError)) return { result: toJson(clientSha, base64) }
  return { result: toJson(reply, base64) }
}

// ---------------------------------------------------------------------------
// The HTTP side

export interface UpstashProxyOptions {
  redisPort: number
  token: string
  /** Holds every answer this long (a slow store). */
  delayMs?: number
  port?: number
}

export interface UpstashProxy {
  url: string
  token: string
  /** Requests served per token label ('' for the bare token), by path. */
  stats(label: string): Record<string, number>
  stop(): Promise<void>
}

function isCommand(value: unknown): value is (string | number)[] {
  return Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || v === null)
}

const normalise = (command: unknown[]): (string | number)[] => command.map((v) => (typeof v === 'number' || typeof v === 'string' ? v : v === null ? '' : String(v)))

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export async function startUpstashProxy(opts: UpstashProxyOptions): Promise<UpstashProxy> {
  const redis = new RespConnection(opts.redisPort)
  const scripts = new ScriptTable()
  const counts = new Map<string, Record<string, number>>()

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    const path = (req.url ?? '/').split('?')[0]!
    if (req.method === 'GET' && path.startsWith('/__stats/')) return reply(200, counts.get(decodeURIComponent(path.slice(9))) ?? {})
    const auth = req.headers['authorization'] ?? ''
    const bearer = auth.startsWith('Bearer ') ? auth.slice(7) : ''
    const label = bearer === opts.token ? '' : bearer.startsWith(`${opts.token}.`) ? bearer.slice(opts.token.length + 1) : undefined
    if (label === undefined) return reply(401, { error: 'Unauthorized' })
    if (req.method !== 'POST') return reply(405, { error: 'only POST' })
    const perLabel = counts.get(label) ?? {}
    counts.set(label, perLabel)
    perLabel[path] = (perLabel[path] ?? 0) + 1
    const base64 = String(req.headers['upstash-encoding'] ?? '').toLowerCase() === 'base64'
    let body: unknown
    try {
      body = JSON.parse(await readBody(req))
    } catch {
      return reply(400, { error: 'ERR body is not JSON' })
    }
    if (opts.delayMs) await new Promise((resolve) => setTimeout(resolve, opts.delayMs))

    if (path === '/' || path === '') {
      if (!isCommand(body)) return reply(400, { error: 'ERR body must be a command array' })
      const { command, clientSha } = scripts.rewrite(normalise(body))
      const [answer] = await redis.send([command])
      const out = entry(answer!, base64, clientSha)
      return reply('error' in out ? 400 : 200, out)
    }
    if (path === '/pipeline' || path === '/multi-exec') {
      if (!Array.isArray(body) || !body.every(isCommand)) return reply(400, { error: 'ERR body must be an array of command arrays' })
      const rewritten = (body as unknown[][]).map((c) => scripts.rewrite(normalise(c)))
      if (path === '/pipeline') {
        const answers = await redis.send(rewritten.map((r) => r.command))
        return reply(200, answers.map((a, i) => entry(a, base64, rewritten[i]!.clientSha)))
      }
      const answers = await redis.send([['MULTI'], ...rewritten.map((r) => r.command), ['EXEC']])
      const queued = answers.slice(1, -1)
      const queuedError = queued.find((a) => a instanceof RedisReplyError)
      const exec = answers[answers.length - 1]!
      if (queuedError instanceof RedisReplyError) return reply(400, { error: queuedError.message })
      if (exec instanceof RedisReplyError) return reply(400, { error: exec.message })
      if (!Array.isArray(exec)) return reply(400, { error: 'ERR transaction aborted' })
      return reply(200, exec.map((a, i) => entry(a, base64, rewritten[i]!.clientSha)))
    }
    return reply(404, { error: `ERR unknown path ${path}` })
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: `proxy: ${error instanceof Error ? error.message : String(error)}` }))
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy: no port')
  return {
    url: `http://127.0.0.1:${address.port}`,
    token: opts.token,
    stats: (label) => ({ ...(counts.get(label) ?? {}) }),
    stop: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      redis.close()
    },
  }
}
