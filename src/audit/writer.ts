// Appending audit rows, and alerting.
//
// Reads and refusals are recorded before their answer is sent: the record goes
// to the caller's chain's AuditSequencer (one writer per chain), which holds
// it durably in its outbox once `appendMany` returns (a refusal past its
// sub's refusal budget is folded into that window's aggregate row). The rows of an
// isolate's concurrent calls travel together (src/lane.ts): a row is sent at
// once when no append to its chain is in flight, else it waits for that one
// and goes with every row then waiting, in one request. If the sequencer
// cannot be reached, the row is logged as `audit_write_failed` with the whole
// (already redacted) record, so it can be replayed into the chain. Failures
// (error, timeout, SQL write incident) also go to the alert throttle: one
// alert per tool and kind per minute, with a count, POSTed to
// ALERT_WEBHOOK_URL (HMAC-signed) or logged.
import type { Config } from '../config.ts'
import type { Logger } from '../log.ts'
import { AlertThrottle, deliverAlert, type Alert } from './alert.ts'
import type { AuditRecord } from './chain.ts'
import { chainName } from './chains.ts'
import type { AuditSequencer } from './sequencer.ts'
import { deliver, laneOf } from '../lane.ts'

/** The sequencer of audit chain `chain` (see chains.ts chainOf for which chain a caller uses). */
export function sequencer(env: Env, chain = 0): DurableObjectStub<AuditSequencer> {
  return env.AUDIT_SEQUENCER.get(env.AUDIT_SEQUENCER.idFromName(chainName(chain)))
}

/** Per isolate, best effort: each isolate throttles its own alerts. */
export const alertThrottle = new AlertThrottle({ now: () => Date.now() })

/** How often a row waiting for another call's append looks whether it went. */
const APPEND_POLL_MS = 1
/** Longest a row waits for another call's append before it is logged as not written. */
const APPEND_WAIT_MS = 10_000

/** Appends `record` to its chain; resolves once it is durable, or logged as `audit_write_failed`. */
export async function appendRow(env: Env, record: AuditRecord, log: Logger, chain = 0): Promise<void> {
  try {
    await deliver(laneOf<AuditRecord>(env.AUDIT_SEQUENCER, chainName(chain)), record, { waitMs: 0, pollMs: APPEND_POLL_MS, timeoutMs: APPEND_WAIT_MS, onFailure: 'reject' }, (records) =>
      sequencer(env, chain).appendMany(records),
    )
    log('debug', 'audit_written', { chain, outcome: record.outcome, request_id: record.request_id })
  } catch (error) {
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    log('error', 'audit_write_failed', { reason, chain, replay: record })
  }
}

export function alertKind(record: AuditRecord): string | undefined {
  if (record.error_code === 'sql_write_incident') return 'sql_write_incident'
  if (record.outcome === 'error' || record.outcome === 'timeout') return record.outcome
  return undefined
}

function deliverAll(alerts: Alert[], config: Config, log: Logger): Promise<void>[] {
  return alerts.map((alert) =>
    deliverAlert(alert, {
      ...(config.alertWebhook ? { url: config.alertWebhook.url, secret: config.alertWebhook.secret } : {}),
      log: (line) => log(line['level'] === 'error' ? 'error' : 'warn', String(line['event'] ?? 'alert'), line),
    }),
  )
}

/** Offers a failure to the throttle; returns the deliveries to wait for. */
export function alertOn(record: AuditRecord, config: Config, log: Logger): Promise<void>[] {
  const kind = alertKind(record)
  const due: Alert[] = []
  if (kind) {
    const alert = alertThrottle.offer({ tool: record.tool ?? null, kind }, { requestId: record.request_id, sub: record.sub, detail: record.error_code ?? undefined })
    if (alert) due.push(alert)
  }
  due.push(...alertThrottle.flush())
  return deliverAll(due, config, log)
}

/** For the cron: sends what the throttle has been holding back. */
export function flushAlerts(config: Config, log: Logger): Promise<void>[] {
  return deliverAll(alertThrottle.flush(), config, log)
}
