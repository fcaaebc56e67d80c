import { describe, expect, it } from 'vitest'
import {
  ALERT_SIGNATURE_HEADER, AlertThrottle, alertSignatureHeader, deliverAlert, signAlert, verifyAlertSignature,
  type Alert,
} from '../../src/audit/alert.ts'

function clock(start = Date.UTC(2026, 0, 1)) {
  let now = start
  return { now: () => now, advance: (ms: number) => { now += ms } }
}

const failure = (i: number) => ({ requestId: `req-${i}`, sub: 'alice' })
const key = { tool: 'search', kind: 'error' }

describe('AlertThrottle', () => {
  it('a storm of 20 failures in a minute sends one alert at once, then one alert carrying the count', () => {
    const c = clock()
    const throttle = new AlertThrottle({ now: c.now })
    const first = throttle.offer(key, failure(0))
    expect(first).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      kind: 'error', tool: 'search', requestId: 'req-0', sub: 'alice', count: 1,
      firstAt: '2026-01-01T00:00:00.000Z', lastAt: '2026-01-01T00:00:00.000Z',
    })
    const during: (Alert | null)[] = []
    for (let i = 1; i < 20; i += 1) {
      c.advance(2_000)
      during.push(throttle.offer(key, failure(i)))
    }
    expect(during.every((a) => a === null)).toBe(true) // 19 suppressed, within 38 s
    c.advance(30_000) // 68 s after the first alert
    const next = throttle.offer(key, failure(20))
    expect(next).toMatchObject({
      count: 20, // the 19 suppressed + this one
      requestId: 'req-20',
      firstAt: '2026-01-01T00:00:02.000Z',
      lastAt: '2026-01-01T00:01:08.000Z',
    })
    // A new window started: the next failure is throttled again.
    c.advance(1_000)
    expect(throttle.offer(key, failure(21))).toBeNull()
  })

  it('after a quiet window the next failure alerts at once with count 1', () => {
    const c = clock()
    const throttle = new AlertThrottle({ now: c.now, windowMs: 10_000 })
    expect(throttle.offer(key, failure(0))?.count).toBe(1)
    c.advance(10_000)
    expect(throttle.offer(key, failure(1))).toMatchObject({ count: 1, requestId: 'req-1' })
  })

  it('different tools and kinds alert independently', () => {
    const c = clock()
    const throttle = new AlertThrottle({ now: c.now })
    expect(throttle.offer({ tool: 'search', kind: 'error' }, failure(1))).not.toBeNull()
    expect(throttle.offer({ tool: 'search', kind: 'timeout' }, failure(2))).not.toBeNull()
    expect(throttle.offer({ tool: 'execute_query', kind: 'error' }, failure(3))).not.toBeNull()
    expect(throttle.offer({ tool: null, kind: 'error' }, failure(4))).not.toBeNull()
    expect(throttle.offer({ tool: 'execute_query', kind: 'sql_write_incident' }, failure(5))).not.toBeNull()
    expect(throttle.offer({ tool: 'search', kind: 'error' }, failure(6))).toBeNull()
    expect(throttle.offer({ tool: 'search', kind: 'timeout' }, failure(7))).toBeNull()
  })

  it('flush reports the tail of a storm that stopped, once', () => {
    const c = clock()
    const throttle = new AlertThrottle({ now: c.now })
    throttle.offer(key, failure(0))
    for (let i = 1; i <= 4; i += 1) {
      c.advance(1_000)
      throttle.offer(key, { ...failure(i), detail: `boom ${i}` })
    }
    expect(throttle.flush()).toEqual([]) // window not over yet
    c.advance(60_000)
    expect(throttle.flush()).toEqual([{
      id: expect.any(String),
      kind: 'error', tool: 'search', requestId: 'req-4', sub: 'alice', count: 4,
      firstAt: '2026-01-01T00:00:01.000Z', lastAt: '2026-01-01T00:00:04.000Z', detail: 'boom 4',
    }])
    expect(throttle.flush()).toEqual([])
    c.advance(1_000)
    expect(throttle.offer(key, failure(5))).toBeNull() // flushing started a new window
  })

  it('remembers a bounded number of keys', () => {
    const c = clock()
    const throttle = new AlertThrottle({ now: c.now, maxKeys: 2 })
    throttle.offer({ tool: 'a', kind: 'error' }, failure(1))
    throttle.offer({ tool: 'b', kind: 'error' }, failure(2))
    throttle.offer({ tool: 'c', kind: 'error' }, failure(3))
    expect(throttle.offer({ tool: 'a', kind: 'error' }, failure(4))).not.toBeNull() // 'a' was forgotten
    expect(throttle.offer({ tool: 'c', kind: 'error' }, failure(5))).toBeNull()
  })

  it('refuses a non-positive window', () => {
    expect(() => new AlertThrottle({ windowMs: 0 })).toThrow(/windowMs/)
  })
})

describe('alert signatures', () => {
  const body = JSON.stringify({ kind: 'error', tool: 'search', count: 3 })
  const secret = 'whsec_test_secret'
  const t = 1_767_225_600

  it('the signature is HMAC-SHA256 over "<t>.<body>" in hex', async () => {
    const sig = await signAlert(body, secret, t)
    expect(sig).toMatch(/^[0-9a-f]{64}$/)
    const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
    const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(`${t}.${body}`)))
    expect(sig).toBe([...mac].map((b) => b.toString(16).padStart(2, '0')).join(''))
    expect(await alertSignatureHeader(body, secret, t)).toBe(`t=${t},v1=${sig}`)
  })

  it('a genuine alert verifies within the tolerance', async () => {
    const header = await alertSignatureHeader(body, secret, t)
    expect(await verifyAlertSignature(body, header, secret, t)).toBe(true)
    expect(await verifyAlertSignature(body, header, secret, t + 300)).toBe(true)
    expect(await verifyAlertSignature(body, header, secret, t - 300)).toBe(true)
  })

  it('a tampered body fails verification', async () => {
    const header = await alertSignatureHeader(body, secret, t)
    expect(await verifyAlertSignature(body.replace('3', '4'), header, secret, t)).toBe(false)
  })

  it('a replayed (stale) or future timestamp fails verification', async () => {
    const header = await alertSignatureHeader(body, secret, t)
    expect(await verifyAlertSignature(body, header, secret, t + 301)).toBe(false)
    expect(await verifyAlertSignature(body, header, secret, t - 301)).toBe(false)
    expect(await verifyAlertSignature(body, header, secret, t + 3600, 7200)).toBe(true)
  })

  it('a changed timestamp, a wrong secret or a malformed header fails verification', async () => {
    const sig = await signAlert(body, secret, t)
    expect(await verifyAlertSignature(body, `t=${t + 1},v1=${sig}`, secret, t)).toBe(false)
    expect(await verifyAlertSignature(body, `t=${t},v1=${sig}`, 'other-secret', t)).toBe(false)
    for (const header of ['', `v1=${sig}`, `t=${t}`, `t=abc,v1=${sig}`, `t=${t},t=${t},v1=${sig}`, `t=${t},v1=${sig.slice(2)}`, `t=${t},v0=${sig}`]) {
      expect(await verifyAlertSignature(body, header, secret, t), header).toBe(false)
    }
    expect(await verifyAlertSignature(body, null, secret, t)).toBe(false)
    expect(await verifyAlertSignature(body, `t=${t},v1=${sig}`, '', t)).toBe(false)
  })

  it('any one valid v1 among several verifies (secret rotation)', async () => {
    const sig = await signAlert(body, secret, t)
    expect(await verifyAlertSignature(body, `t=${t}, v1=${'0'.repeat(64)}, v1=${sig}`, secret, t)).toBe(true)
  })

  it('signing refuses a non-integer timestamp or an empty secret', async () => {
    await expect(signAlert(body, secret, 1.5)).rejects.toThrow(/unix seconds/)
    await expect(signAlert(body, '', t)).rejects.toThrow(/secret/)
  })
})

describe('deliverAlert', () => {
  const alert: Alert = {
    id: '6f1c1f0e-3b2a-4c1d-9e8f-0a1b2c3d4e5f', kind: 'timeout', tool: 'search', requestId: 'req-1', sub: 'alice', count: 3,
    firstAt: '2026-01-01T00:00:00.000Z', lastAt: '2026-01-01T00:00:30.000Z', detail: 'upstream ada@acme.example timed out',
  }

  function recorder() {
    const lines: Record<string, unknown>[] = []
    const calls: { url: string; init: RequestInit }[] = []
    const fetchOk = (async (input: RequestInfo | URL, init?: RequestInit) => {
      calls.push({ url: String(input), init: init ?? {} })
      return new Response('ok', { status: 200 })
    }) as typeof fetch
    return { lines, calls, fetchOk, log: (line: Record<string, unknown>) => { lines.push(line) } }
  }

  it('posts signed JSON that the receiver can verify', async () => {
    const r = recorder()
    const now = Date.UTC(2026, 0, 1, 0, 1)
    await deliverAlert(alert, { url: 'https://hooks.example/alerts', secret: 's3cret', fetch: r.fetchOk, log: r.log, now: () => now })
    expect(r.calls).toHaveLength(1)
    const { url, init } = r.calls[0]!
    expect(url).toBe('https://hooks.example/alerts')
    expect(init.method).toBe('POST')
    const headers = new Headers(init.headers)
    expect(headers.get('content-type')).toBe('application/json')
    const body = String(init.body)
    expect(await verifyAlertSignature(body, headers.get(ALERT_SIGNATURE_HEADER), 's3cret', now / 1000)).toBe(true)
    expect(JSON.parse(body)).toMatchObject({ kind: 'timeout', tool: 'search', count: 3, detail: 'upstream [redacted-email] timed out' })
    expect(r.lines).toEqual([expect.objectContaining({ level: 'info', msg: 'alert delivered' })])
  })

  it('without a URL the alert is logged as one structured line', async () => {
    const r = recorder()
    await deliverAlert(alert, { fetch: r.fetchOk, log: r.log })
    expect(r.calls).toHaveLength(0)
    expect(r.lines).toEqual([{ level: 'warn', msg: 'alert', alert: { ...alert, detail: 'upstream [redacted-email] timed out' } }])
  })

  it('an alert is never sent unsigned: a URL without a secret logs an error and sends nothing', async () => {
    const r = recorder()
    await deliverAlert(alert, { url: 'https://hooks.example/alerts', fetch: r.fetchOk, log: r.log })
    expect(r.calls).toHaveLength(0)
    expect(r.lines).toHaveLength(1)
    expect(r.lines[0]).toMatchObject({ level: 'error', alert: { kind: 'timeout' } })
    expect(String(r.lines[0]?.msg)).toMatch(/ALERT_WEBHOOK_SECRET/)
  })

  it('alerts are not sent over plain http except to localhost', async () => {
    const r = recorder()
    await deliverAlert(alert, { url: 'http://hooks.example/alerts', secret: 's', fetch: r.fetchOk, log: r.log })
    await deliverAlert(alert, { url: 'not a url', secret: 's', fetch: r.fetchOk, log: r.log })
    expect(r.calls).toHaveLength(0)
    expect(r.lines.map((l) => l.level)).toEqual(['error', 'error'])
    await deliverAlert(alert, { url: 'http://127.0.0.1:8788/hook', secret: 's', fetch: r.fetchOk, log: r.log })
    expect(r.calls).toHaveLength(1)
  })

  it('network failures and error statuses are logged, never thrown', async () => {
    const r = recorder()
    const noWait = async () => undefined
    const failing = (async () => { throw new TypeError('connect ECONNREFUSED') }) as typeof fetch
    await expect(deliverAlert(alert, { url: 'https://hooks.example/a', secret: 's', fetch: failing, log: r.log, attempts: 1 })).resolves.toBeUndefined()
    const status500 = (async () => new Response('nope', { status: 500 })) as typeof fetch
    await expect(deliverAlert(alert, { url: 'https://hooks.example/a', secret: 's', fetch: status500, log: r.log, attempts: 1 })).resolves.toBeUndefined()
    expect(r.lines).toEqual([
      expect.objectContaining({ level: 'error', msg: 'alert delivery failed', error: 'TypeError: connect ECONNREFUSED' }),
      expect.objectContaining({ level: 'error', msg: 'alert delivery failed', status: 500 }),
    ])
    const throwingLog = () => { throw new Error('log sink down') }
    await expect(deliverAlert(alert, { url: 'https://hooks.example/a', secret: 's', fetch: failing, log: throwingLog, sleep: noWait })).resolves.toBeUndefined()
  })

  it('POSTs with redirect: manual, and a 3xx answer is a failed delivery, logged and not followed or retried', async () => {
    const r = recorder()
    const calls: RequestInit[] = []
    const redirecting = (async (_input: RequestInfo | URL, init?: RequestInit) => {
      calls.push(init ?? {})
      return new Response(null, { status: 307, headers: { location: 'https://elsewhere.example/steal' } })
    }) as typeof fetch
    await deliverAlert(alert, { url: 'https://hooks.example/a', secret: 's', fetch: redirecting, log: r.log, sleep: async () => undefined })
    expect(calls).toHaveLength(1)
    expect(calls[0]!.redirect).toBe('manual')
    expect(r.lines).toEqual([expect.objectContaining({ level: 'error', status: 307, msg: expect.stringContaining('redirect, which is not followed') })])
  })

  it('retries network failures, 429 and 5xx with the same alert id and body, each attempt freshly signed', async () => {
    const r = recorder()
    const seen: { body: string; headers: Headers }[] = []
    const answers = [503, 429, 200]
    const flaky = (async (_input: RequestInfo | URL, init?: RequestInit) => {
      seen.push({ body: String(init?.body), headers: new Headers(init?.headers) })
      return new Response(null, { status: answers[seen.length - 1] ?? 200 })
    }) as typeof fetch
    let now = Date.UTC(2026, 0, 1)
    const waits: number[] = []
    await deliverAlert(alert, { url: 'https://hooks.example/a', secret: 's', fetch: flaky, log: r.log, now: () => now, sleep: async (ms) => { waits.push(ms); now += ms } })
    expect(seen).toHaveLength(3)
    expect(new Set(seen.map((s) => JSON.parse(s.body).id))).toEqual(new Set([alert.id]))
    expect(new Set(seen.map((s) => s.headers.get('idempotency-key')))).toEqual(new Set([alert.id]))
    expect(new Set(seen.map((s) => s.body)).size).toBe(1)
    for (const s of seen) expect(await verifyAlertSignature(s.body, s.headers.get(ALERT_SIGNATURE_HEADER), 's', now / 1000)).toBe(true)
    expect(waits).toEqual([500, 1000])
    expect(r.lines.map((l) => l.msg)).toEqual(['alert delivery retry', 'alert delivery retry', 'alert delivered'])
    expect(r.lines[2]).toMatchObject({ id: alert.id, attempt: 3 })
  })

  it('gives up after `attempts` and does not retry a 4xx refusal', async () => {
    const r = recorder()
    let calls = 0
    const down = (async () => { calls++; throw new TypeError('fetch failed') }) as typeof fetch
    await deliverAlert(alert, { url: 'https://hooks.example/a', secret: 's', fetch: down, log: r.log, attempts: 3, sleep: async () => undefined })
    expect(calls).toBe(3)
    expect(r.lines.at(-1)).toMatchObject({ level: 'error', msg: 'alert delivery failed', attempts: 3 })
    calls = 0
    const refused = (async () => { calls++; return new Response(null, { status: 400 }) }) as typeof fetch
    await deliverAlert(alert, { url: 'https://hooks.example/a', secret: 's', fetch: refused, log: r.log, sleep: async () => undefined })
    expect(calls).toBe(1)
  })

  it('every alert the throttle emits has its own id; an alert keeps its id however often it is delivered', () => {
    const c = clock()
    const throttle = new AlertThrottle({ now: c.now, windowMs: 1000 })
    const ids = new Set<string>()
    for (let i = 0; i < 50; i++) {
      const a = throttle.offer({ tool: `t${i}`, kind: 'error' }, failure(i))
      ids.add(a!.id)
    }
    expect(ids.size).toBe(50)
  })
})
