// Writing audit rows off the critical path, and alerting.
//
// Reads and refusals are recorded after the response (`waitUntil`): the
// record goes to the caller's chain's AuditSequencer (one writer per chain), which
// holds it durably in its outbox once `append` returns (refusals: `refuse`,
// which applies the sub's refusal budget). If the sequencer
// cannot be reached, the row is logged as `audit_write_failed` with the whole
// (already redacted) record, so it can be replayed into the chain. Failures
// (error, timeout, SQL write incident) also go to the alert throttle: one
// alert per tool and kind per minute, with a count, POSTed to
// ALERT_WEBHOOK_URL (HMAC-signed) or logged.
import type { Config } from '../config.ts'
import type { Logger } from '../log.ts'
import { AlertThrottle, deliverAlert, type Alert } from './alert.ts'
import { isRefusal, type AuditRecord } from './chain.ts'
import { chainName } from './chains.ts'
import type { AuditSequencer } from './sequencer.ts'

/** The sequencer of audit chain `chain` (see chains.ts chainOf for which chain a caller uses). */
export function sequencer(env: Env, chain = 0): DurableObjectStub<AuditSequencer> {
  return env.AUDIT_SEQUENCER.get(env.AUDIT_SEQUENCER.idFromName(chainName(chain)))
}

/** Per isolate, best effort: each isolate throttles its own alerts. */
export const alertThrottle = new AlertThrottle({ now: () => Date.now() })

export async function appendLater(env: Env, record: AuditRecord, log: Logger, chain = 0): Promise<void> {
  try {
    const stub = sequencer(env, chain)
    // Refusals count against the sub's refusal budget: past it they are folded into an aggregate row.
    const head = isRefusal(record.outcome) ? await stub.refuse(record) : await stub.append(record)
    if ('folded' in head) log('debug', 'audit_folded', { chain, count: head.folded, outcome: record.outcome })
    else log('debug', 'audit_written', { chain, seq: head.seq, hash: head.hash, outcome: record.outcome })
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
