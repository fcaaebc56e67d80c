// Structured logging: one JSON object per line on the Worker's console, which
// Workers Logs / Logpush index. Callers pass fields, never raw headers or
// tokens; `redactText` scrubs free-text values as a second line of defence.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFields = Record<string, unknown>
export type Logger = (level: LogLevel, event: string, fields?: LogFields) => void

const BEARER = /\bBearer\s+[\w.~+/=-]+/gi
const JWT = /\beyJ[\w-]*\.[\w-]*\.[\w-]*/g

function scrub(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(BEARER, 'Bearer [redacted-token]').replace(JWT, '[redacted-token]')
  return value
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
