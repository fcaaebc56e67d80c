// A local stand-in for Upstash: redis-server (own process group) + the Upstash
// REST proxy (test/support/upstash-proxy.ts), in this process. As a CLI
// (`tsx scripts/lib/upstash-local.ts`) it prints one JSON line {url, token}
// and serves until SIGTERM/SIGINT — so a benchmark can run it in a process of
// its own, away from its load generator's event loop.
import { pathToFileURL } from 'node:url'
import { startRedis } from '../../test/support/redis-server.ts'
import { startUpstashProxy } from '../../test/support/upstash-proxy.ts'

export interface LocalUpstash {
  url: string
  token: string
  redisPort: number
  stop(): Promise<void>
}

export async function startLocalUpstash(): Promise<LocalUpstash> {
  const redis = await startRedis()
  const token = `local-${crypto.randomUUID()}`
  const proxy = await startUpstashProxy({ redisPort: redis.port, token })
  return {
    url: proxy.url,
    token,
    redisPort: redis.port,
    stop: async () => {
      await proxy.stop()
      await redis.stop()
    },
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const local = await startLocalUpstash()
  console.log(JSON.stringify({ url: local.url, token: local.token, redisPort: local.redisPort }))
  const stop = () => void local.stop().finally(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
