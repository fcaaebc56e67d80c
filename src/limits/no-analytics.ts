/**
 * Stand-in for `@upstash/core-analytics` in wrangler builds (`[alias]` in
 * wrangler.toml; −6 KiB minified). `@upstash/ratelimit` constructs its
 * `Analytics` only for `analytics: true`, and the Upstash limiter
 * (src/limits/upstash.ts) always passes `analytics: false`; so this class is
 * never built, and if a future change turned analytics on, the first limit
 * check would throw (the request is refused, never admitted unchecked)
 * instead of silently recording nothing.
 * test/unit/no-analytics.test.ts runs the limiter against it.
 */
export class Analytics {
  constructor() {
    throw new Error('@upstash/ratelimit analytics is not bundled (src/limits/no-analytics.ts); keep analytics: false')
  }
}
