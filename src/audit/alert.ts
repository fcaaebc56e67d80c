// Failure alerts: throttling, signing, delivery.
//
// What it guarantees:
//   * AlertThrottle: for each (tool, kind) the FIRST failure produces an
//     alert at once (count 1); later failures of that key are only counted
//     until `windowMs` (default 60 s) has passed since the key's last alert;
//     the first failure after that produces the next alert, whose `count` is
//     every failure since the previous alert (the suppressed ones plus this
//     one) and whose `firstAt`/`lastAt` span them. So a failure storm yields
//     at most one alert per tool and kind per window, and no failure goes
//     uncounted. `flush()` emits the pending counts of keys whose window has
//     passed without a new failure (call it from any later request or the
//     cron). Time comes only from the injected clock: deterministic in tests.
//     State is per isolate and best effort: an isolate that is evicted
//     forgets its counts, and N isolates may each send their own alert.
//   * Signatures are Stripe-style: header `X-Bastion-Signature:
//     t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A
//     receiver recomputes over the raw body, compares in constant time
//     (Web Crypto HMAC verify) and rejects timestamps outside its tolerance,
//     so a captured alert cannot be replayed later or altered.
//   * Every alert carries an `id` (a random UUID, made once when the throttle
//     emits it). The same id, in the body and in the `Idempotency-Key`
//     header, goes with every delivery attempt of that alert, so a receiver
//     dedupes retries on it.
//   * deliverAlert never throws and never sends an unsigned alert: without a
//     URL it logs the alert as one structured line; with a URL but no secret,
//     or a URL that is not https (http only to localhost), it logs an error
//     line carrying the alert and sends nothing. It POSTs with
//     `redirect: 'manual'`: a 3xx answer is a failed delivery (logged with
//     its status, never followed, so a signed alert is never resent to
//     wherever a redirect points). Network failures, 429 and 5xx answers are
//     retried (`attempts`, default 3, with backoff), each attempt freshly
//     signed; other non-2xx answers are not; a final failure is logged.
//     `detail` is passed through redactText first.

import { toHex } from '../digest.ts'
import { redactText } from './redact.ts'

export interface Alert {
  /** Random UUID, the same on every delivery attempt: receivers dedupe on it. */
  id: string
  kind: 'error' | 'timeout' | 'sql_write_incident' | (string & {})
  tool: string | null
  /** The request that triggered this alert (the latest failure). */
  requestId: string
  sub: string
  /** Failures this alert stands for: 1, or the suppressed ones since the last alert plus this one. */
  count: number
  /** ISO-8601 time of the first failure counted. */
  firstAt: string
  /** ISO-8601 time of the latest failure counted. */
  lastAt: string
  detail?: string
}

export interface AlertKey {
  tool: string | null
  kind: Alert['kind']
}

export interface AlertEvent {
  requestId: string
  sub: string
  detail?: string
}

export interface AlertThrottleOptions {
  /** Minimum time between two alerts of the same (tool, kind). Default 60 000. */
  windowMs?: number
  /** Clock in epoch milliseconds. Default Date.now. */
  now?: () => number
  /** Keys remembered at most; the stalest are forgotten beyond it. Default 1000. */
  maxKeys?: number
  /** Alert ids. Default crypto.randomUUID. */
  newId?: () => string
}

interface KeyState {
  tool: string | null
  kind: string
  lastAlertAt: number
  pending: number
  pendingFirstAt: number
  pendingLastAt: number
  last: AlertEvent
}

export class AlertThrottle {
  readonly #windowMs: number
  readonly #now: () => number
  readonly #maxKeys: number
  readonly #newId: () => string
  readonly #keys = new Map<string, KeyState>()

  constructor(opts: AlertThrottleOptions = {}) {
    const { windowMs = 60_000, now = Date.now, maxKeys = 1000, newId = () => crypto.randomUUID() } = opts
    if (!(windowMs > 0)) throw new RangeError('AlertThrottle: "windowMs" must be positive')
    if (!(maxKeys > 0)) throw new RangeError('AlertThrottle: "maxKeys" must be positive')
    this.#windowMs = windowMs
    this.#now = now
    this.#maxKeys = maxKeys
    this.#newId = newId
  }

  /** Records one failure; returns the alert to send now, or null when throttled. */
  offer(key: AlertKey, event: AlertEvent): Alert | null {
    const now = this.#now()
    const id = `${key.kind}\u0000${key.tool ?? ''}`
    const state = this.#keys.get(id)
    if (state && now - state.lastAlertAt < this.#windowMs) {
      if (state.pending === 0) state.pendingFirstAt = now
      state.pending += 1
      state.pendingLastAt = now
      state.last = event
      return null
    }
    const firstAt = state && state.pending > 0 ? state.pendingFirstAt : now
    const count = (state?.pending ?? 0) + 1
    this.#keys.delete(id) // re-insert: Map order is then least recently alerted first
    this.#keys.set(id, { tool: key.tool, kind: key.kind, lastAlertAt: now, pending: 0, pendingFirstAt: 0, pendingLastAt: 0, last: event })
    this.#evict()
    return makeAlert(this.#newId(), key.tool, key.kind, event, count, firstAt, now)
  }

  /**
   * Alerts for keys whose window has passed with failures still uncounted in
   * any alert (the tail of a storm that then stopped). Each key flushed
   * starts a new window, as if its alert had just been sent.
   */
  flush(): Alert[] {
    const now = this.#now()
    const out: Alert[] = []
    for (const [id, state] of this.#keys) {
      if (now - state.lastAlertAt < this.#windowMs) continue
      if (state.pending === 0) {
        this.#keys.delete(id) // idle key: forget it
        continue
      }
      out.push(makeAlert(this.#newId(), state.tool, state.kind, state.last, state.pending, state.pendingFirstAt, state.pendingLastAt))
      this.#keys.delete(id)
      this.#keys.set(id, { ...state, lastAlertAt: now, pending: 0 })
    }
    return out
  }

  #evict(): void {
    while (this.#keys.size > this.#maxKeys) {
      const oldest = this.#keys.keys().next()
      if (oldest.done) return
      this.#keys.delete(oldest.value)
    }
  }
}

function makeAlert(id: string, tool: string | null, kind: string, event: AlertEvent, count: number, firstAt: number, lastAt: number): Alert {
  const alert: Alert = {
    id, kind, tool, requestId: event.requestId, sub: event.sub, count,
    firstAt: new Date(firstAt).toISOString(), lastAt: new Date(lastAt).toISOString(),
  }
  if (event.detail !== undefined) alert.detail = event.detail
  return alert
}

export const ALERT_SIGNATURE_HEADER = 'X-Bastion-Signature'

const encoder = new TextEncoder()

async function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
}

function assertTimestamp(timestamp: number): void {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new TypeError('alert signature: timestamp must be unix seconds (an integer)')
}

/** Hex HMAC-SHA256 with `secret` over `${timestamp}.${body}` (timestamp in unix seconds). */
export async function signAlert(body: string, secret: string, timestamp: number): Promise<string> {
  assertTimestamp(timestamp)
  if (secret.length === 0) throw new TypeError('alert signature: secret must not be empty')
  const mac = await crypto.subtle.sign('HMAC', await hmacKey(secret), encoder.encode(`${timestamp}.${body}`))
  return toHex(new Uint8Array(mac))
}

/** The value of the X-Bastion-Signature header: `t=<timestamp>,v1=<hex>`. */
export async function alertSignatureHeader(body: string, secret: string, timestamp: number): Promise<string> {
  return `t=${timestamp},v1=${await signAlert(body, secret, timestamp)}`
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | null {
  if (hex.length !== 64 || !/^[0-9a-f]+$/i.test(hex)) return null
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i += 1) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return out
}

/**
 * For receivers (and tests): true when `header` carries a timestamp within
 * `toleranceSeconds` of `nowSeconds` and at least one `v1` signature that is
 * the HMAC of `${t}.${body}` under `secret`. Comparison is constant-time
 * (crypto.subtle.verify). Several v1 entries are allowed (secret rotation).
 */
export async function verifyAlertSignature(
  body: string,
  header: string | null | undefined,
  secret: string,
  nowSeconds: number,
  toleranceSeconds = 300,
): Promise<boolean> {
  if (!header || secret.length === 0) return false
  let timestamp: number | null = null
  const signatures: Uint8Array<ArrayBuffer>[] = []
  for (const part of header.split(',')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    const name = part.slice(0, eq).trim()
    const value = part.slice(eq + 1).trim()
    if (name === 't') {
      if (timestamp !== null || !/^\d{1,15}$/.test(value)) return false
      timestamp = Number(value)
    } else if (name === 'v1') {
      const bytes = fromHex(value)
      if (bytes) signatures.push(bytes)
    }
  }
  if (timestamp === null || signatures.length === 0) return false
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return false
  const key = await hmacKey(secret)
  const data = encoder.encode(`${timestamp}.${body}`)
  let ok = false
  for (const signature of signatures) {
    if (await crypto.subtle.verify('HMAC', key, signature, data)) ok = true
  }
  return ok
}

export interface DeliverAlertOptions {
  /** ALERT_WEBHOOK_URL. Without it the alert is only logged. */
  url?: string | undefined
  /** ALERT_WEBHOOK_SECRET. Required when `url` is set. */
  secret?: string | undefined
  fetch?: typeof fetch
  /** One structured log line per call (console.log(JSON.stringify(line)) in the Worker). */
  log: (line: Record<string, unknown>) => void
  /** Clock in epoch milliseconds, for the signature timestamp. Default Date.now. */
  now?: () => number
  /** Abort each POST after this long. Default 5000. */
  timeoutMs?: number
  /** POSTs at most, for network failures, 429 and 5xx. Default 3. */
  attempts?: number
  /** Waits between attempts (500 ms, then 1 s, ...). Default setTimeout. */
  sleep?: (ms: number) => Promise<void>
}

/** Answers worth another attempt: the receiver is overloaded or failing, not refusing. */
function retryable(status: number): boolean {
  return status === 429 || status >= 500
}

function allowedWebhook(url: string): boolean {
  try {
    const u = new URL(url)
    if (u.protocol === 'https:') return true
    return u.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname)
  } catch {
    return false
  }
}

/**
 * Sends one alert (see module header). Resolves when done; never rejects.
 * Hand the promise to ctx.waitUntil.
 */
export async function deliverAlert(alert: Alert, opts: DeliverAlertOptions): Promise<void> {
  const safe: Alert = alert.detail === undefined ? { ...alert } : { ...alert, detail: redactText(alert.detail) }
  const { url, secret, log } = opts
  try {
    if (!url) {
      log({ level: 'warn', msg: 'alert', alert: safe })
      return
    }
    if (!secret) {
      log({ level: 'error', msg: 'alert not sent: ALERT_WEBHOOK_URL is set but ALERT_WEBHOOK_SECRET is not (alerts are never sent unsigned)', alert: safe })
      return
    }
    if (!allowedWebhook(url)) {
      log({ level: 'error', msg: 'alert not sent: ALERT_WEBHOOK_URL must be an https URL', alert: safe })
      return
    }
    const body = JSON.stringify(safe)
    const doFetch = opts.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init))
    const attempts = Math.max(1, Math.floor(opts.attempts ?? 3))
    const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)))
    for (let attempt = 1; ; attempt++) {
      let response: Response | undefined
      let error: unknown
      try {
        const timestamp = Math.floor((opts.now ?? Date.now)() / 1000)
        response = await doFetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'idempotency-key': safe.id,
            [ALERT_SIGNATURE_HEADER]: await alertSignatureHeader(body, secret, timestamp),
          },
          body,
          // A redirect is a failed delivery: following it would resend a signed alert elsewhere.
          redirect: 'manual',
          signal: AbortSignal.timeout(opts.timeoutMs ?? 5000),
        })
        // Release the connection; the receiver's answer body is not used.
        await response.body?.cancel().catch(() => undefined)
      } catch (caught) {
        error = caught
      }
      if (response?.ok) {
        log({ level: 'info', msg: 'alert delivered', id: safe.id, kind: safe.kind, tool: safe.tool, count: safe.count, status: response.status, attempt })
        return
      }
      let failure: Record<string, unknown>
      let again: boolean
      if (response === undefined) {
        failure = { msg: 'alert delivery failed', error: redactText(error instanceof Error ? `${error.name}: ${error.message}` : String(error)) }
        again = true
      } else if (response.status >= 300 && response.status < 400) {
        failure = { msg: 'alert delivery failed: the receiver answered with a redirect, which is not followed', status: response.status }
        again = false
      } else {
        failure = { msg: 'alert delivery failed', status: response.status }
        again = retryable(response.status)
      }
      if (!again || attempt >= attempts) {
        log({ level: 'error', ...failure, attempts: attempt, alert: safe })
        return
      }
      log({ level: 'warn', ...failure, msg: 'alert delivery retry', id: safe.id, attempt })
      await sleep(500 * 2 ** (attempt - 1))
    }
  } catch (error) {
    try {
      log({ level: 'error', msg: 'alert delivery failed', error: redactText(error instanceof Error ? `${error.name}: ${error.message}` : String(error)), alert: safe })
    } catch {
      // a throwing logger must not turn into a rejected waitUntil promise
    }
  }
}
