// Structured logging: one JSON object per line on the Worker's console, which
// Workers Logs / Logpush index. Callers pass fields, never raw headers or
// tokens; every value is scrubbed (audit/redact.ts: credentials, JWTs,
// emails, phone numbers) as a second line of defence.
import { redact } from './audit/redact.ts'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFields = Record<string, unknown>
export type Logger = (level: LogLevel, event: string, fields?: LogFields) => void

const NO_KEYS: ReadonlySet<string> = new Set()

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error']
const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 }

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value)
}

/** True when a line at `level` is written under the threshold `min` (LOG_LEVEL). */
export function logs(min: LogLevel, level: LogLevel): boolean {
  return RANK[level] >= RANK[min]
}

/** Tokens, credentials, emails and phone numbers never reach a log line. */
function scrub(value: unknown): unknown {
  return redact(value, NO_KEYS)
}

/**
 * A logger that writes lines at `min` (LOG_LEVEL, default info) and above.
 * Per-request lines such as `audit_written` are debug: off by default, so a
 * busy Worker does not pay a console write per call. Lines below the
 * threshold cost one comparison: nothing is scrubbed or serialised.
 */
export function createLogger(base: LogFields = {}, min: LogLevel = 'info', sink: (level: LogLevel, text: string) => void = write): Logger {
  return function log(level, event, fields = {}) {
    if (!logs(min, level)) return
    const line: LogFields = { level, event, ...base }
    for (const [k, v] of Object.entries(fields)) line[k] = scrub(v)
    sink(level, JSON.stringify(line))
  }
}

function write(level: LogLevel, text: string): void {
  if (level === 'error') console.error(text)
  else if (level === 'warn') console.warn(text)
  else console.log(text)
}
