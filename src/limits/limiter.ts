/**
 * Limiter contract (issue #10). Pure module: no Hono, no Worker globals.
 *
 * One call checks the rate window AND takes a concurrency lease, so the hot
 * path costs one round trip to the store (one Redis script / pipeline for the
 * Upstash backend, one RPC for the embedded Durable Object backend).
 * Every backend must pass the same contract test suite.
 */

/** One rate window: at most `limit` requests per `windowMs` (sliding window). */
export interface RateRule {
  /** Stable name, used in the RateLimit-Policy header and as part of the store key. */
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
}

/** At most `max` leases held at once; a lease expires after `ttlMs` if never released. */
export interface ConcurrencyRule {
  readonly name: string;
  readonly max: number;
  readonly ttlMs: number;
}

export interface AcquireRequest {
  /** The subject being limited (token `sub`). */
  readonly key: string;
  readonly rates: readonly RateRule[];
  readonly concurrency: readonly ConcurrencyRule[];
  /** Caller-chosen unique id for the lease (e.g. the request id). */
  readonly leaseId: string;
}

export type AcquireResult =
  | { readonly ok: true; readonly leaseId: string; readonly remaining: ReadonlyMap<string, number> }
  | {
      readonly ok: false;
      /** Which rule refused the call. */
      readonly rule: string;
      readonly kind: 'rate' | 'concurrency';
      readonly limit: number;
      /** Seconds until a retry can succeed (>= 1), for Retry-After. */
      readonly retryAfterSeconds: number;
    };

/** Thrown by a backend when the store fails or times out; the middleware maps it to 503 (fail closed). */
export class LimitStoreError extends Error {
  override readonly name = 'LimitStoreError';
}

export interface Limiter {
  /** Checks every rate rule and, only if all pass, takes one lease per concurrency rule. Atomic per key. */
  acquire(req: AcquireRequest): Promise<AcquireResult>;
  /** Releases the leases taken by `acquire`. Idempotent; unknown lease ids are ignored. */
  release(key: string, concurrency: readonly ConcurrencyRule[], leaseId: string): Promise<void>;
}

/** Rejects with LimitStoreError when `work` has not settled within `ms`: a hung store never holds a request. */
export function withStoreTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new LimitStoreError(`${what} timed out after ${ms} ms`)), ms)
    work.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}
