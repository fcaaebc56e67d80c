// vitest globalSetup: a real redis-server on a free loopback port (its own
// process group) and the Upstash REST proxy in front of it, for the tests of
// the Upstash limiter backend. Provides (vitest provide/inject):
//   upstash      { url, token } of the proxy, or undefined when Redis is missing
//   upstashSlow  the same Redis behind a proxy that holds every answer 3 s
//   upstashDown  a loopback URL nobody listens on
// Redis missing: under CI=true the run fails; elsewhere the Upstash tests skip,
// and this says so loudly.
import type { TestProject } from 'vitest/node'
import { freePort, redisServerBinary, startRedis } from './redis-server.ts'
import { startUpstashProxy } from './upstash-proxy.ts'

export interface UpstashTarget {
  url: string
  token: string
}

declare module 'vitest' {
  export interface ProvidedContext {
    upstash: UpstashTarget | undefined
    upstashSlow: UpstashTarget | undefined
    upstashDown: UpstashTarget
  }
}

export const SLOW_PROXY_DELAY_MS = 3_000

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const token = `test-${crypto.randomUUID()}`
  project.provide('upstashDown', { url: `http://127.0.0.1:${await freePort()}`, token })
  const binary = redisServerBinary()
  if (binary === undefined) {
    const message = 'redis-server is not installed: the Upstash limiter tests cannot run (apt-get install -y redis-server)'
    if (process.env['CI']) throw new Error(message)
    console.warn(`\n${'!'.repeat(78)}\n!! SKIPPING the Upstash backend tests: ${message}\n${'!'.repeat(78)}\n`)
    project.provide('upstash', undefined)
    project.provide('upstashSlow', undefined)
    return async () => {}
  }
  const redis = await startRedis(binary)
  const proxy = await startUpstashProxy({ redisPort: redis.port, token })
  const slow = await startUpstashProxy({ redisPort: redis.port, token, delayMs: SLOW_PROXY_DELAY_MS })
  project.provide('upstash', { url: proxy.url, token })
  project.provide('upstashSlow', { url: slow.url, token })
  return async () => {
    await proxy.stop()
    await slow.stop()
    await redis.stop()
  }
}
