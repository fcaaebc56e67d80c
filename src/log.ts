// Structured logging: one JSON object per line on the Worker's console, which
// Workers Logs / Logpush index. Callers pass fields, never raw headers or
// tokens; every value is scrubbed (audit/redact.ts: credentials, JWTs,
// emails, phone numbers) as a second line of defence.
import { redact } from './audit/redact.ts'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFields = Record<string, unknown>
export type Logger = (level: LogLevel, event: string, fields?: LogFields) => void

const NO_KEYS: ReadonlySet<string> = new Set()

/** Tokens, credentials, emails and phone numbers never reach a log line. */
function scrub(value: unknown): unknown {
  return redact(value, NO_KEYS)
}

export function createLogger(base: LogFields = {}): Logger {
  return function log(level, event, fields = {}) {
    const line: LogFields = { level, event, ...base }
    for (const [k, v] of Object.entries(fields)) line[k] = scrub(v)
    const text = JSON.stringify(line)
    if (level === 'error') console.error(text)
    else if (level === 'warn') console.warn(text)
    else console.log(text)
  }
}
