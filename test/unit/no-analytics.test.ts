// Wrangler builds link @upstash/ratelimit against src/limits/no-analytics.ts in
// place of @upstash/core-analytics (wrangler.toml [alias]). These tests load
// ratelimit the same way (the stub in the module cache under core-analytics'
// path) and show that the limiter works with analytics off, as
// src/limits/upstash.ts configures it, and that turning analytics on would
// fail loudly rather than silently.
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import type { Ratelimit as RatelimitClass } from '@upstash/ratelimit'
import { Redis } from '@upstash/redis'
import { describe, expect, inject, it } from 'vitest'
import { Analytics as Stub } from '../../src/limits/no-analytics.ts'

const require = createRequire(import.meta.url)
const ratelimitPath = require.resolve('@upstash/ratelimit')
const analyticsPath = require.resolve('@upstash/core-analytics', { paths: [dirname(ratelimitPath)] })
const saved = { ratelimit: require.cache[ratelimitPath], analytics: require.cache[analyticsPath] }
require.cache[analyticsPath] = { id: analyticsPath, filename: analyticsPath, loaded: true, exports: { Analytics: Stub } } as NodeJS.Module
delete require.cache[ratelimitPath]
const { Ratelimit } = require('@upstash/ratelimit') as { Ratelimit: typeof RatelimitClass }
// Leave the module cache as it was for any other file in this worker.
require.cache[ratelimitPath] = saved.ratelimit
if (saved.analytics) require.cache[analyticsPath] = saved.analytics
else delete require.cache[analyticsPath]

const target = inject('upstash')

describe('no-analytics: @upstash/ratelimit without @upstash/core-analytics', () => {
  const redis = () => new Redis({ url: target?.url ?? 'http://127.0.0.1:9', token: `${target?.token ?? 'x'}.no-analytics`, retry: { retries: 0 }, enableTelemetry: false })

  it('the stub refuses to be built, naming the setting', () => {
    expect(() => new Stub()).toThrow(/keep analytics: false/)
  })

  it('ratelimit with analytics on would fail at construction (the stub is what it links)', () => {
    expect(() => new Ratelimit({ redis: redis(), limiter: Ratelimit.slidingWindow(2, '10 s'), analytics: true })).toThrow(/keep analytics: false/)
  })

  it.skipIf(target === undefined)('ratelimit with analytics off (our setting) counts and refuses as usual', async () => {
    const limiter = new Ratelimit({ redis: redis(), limiter: Ratelimit.slidingWindow(2, '10 s'), prefix: `no-analytics:${crypto.randomUUID()}`, analytics: false })
    const results = [await limiter.limit('sub'), await limiter.limit('sub'), await limiter.limit('sub')]
    expect(results.map((r) => r.success)).toEqual([true, true, false])
  })
})
