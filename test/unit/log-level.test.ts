// LOG_LEVEL: the threshold filter of src/log.ts and its parsing in config.ts.
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config.ts'
import { createLogger, LOG_LEVELS, logs, type LogLevel } from '../../src/log.ts'

function capture(min: LogLevel) {
  const lines: { level: LogLevel; line: Record<string, unknown> }[] = []
  const log = createLogger({ requestId: 'r-1' }, min, (level, text) => lines.push({ level, line: JSON.parse(text) as Record<string, unknown> }))
  return { log, lines }
}

describe('LOG_LEVEL filters log lines', () => {
  it('writes exactly the lines at or above the threshold, for every threshold', () => {
    for (const [i, min] of LOG_LEVELS.entries()) {
      const { log, lines } = capture(min)
      for (const level of LOG_LEVELS) log(level, `event_${level}`)
      expect(lines.map((l) => l.level)).toEqual(LOG_LEVELS.slice(i))
      expect(lines.map((l) => l.line['event'])).toEqual(LOG_LEVELS.slice(i).map((l) => `event_${l}`))
    }
  })

  it('keeps per-request debug lines (audit_written) out of the default info level', () => {
    const { log, lines } = capture('info')
    log('debug', 'audit_written', { seq: 1 })
    log('info', 'auth_refused', { code: 'expired' })
    expect(lines).toHaveLength(1)
    expect(lines[0]!.line).toMatchObject({ level: 'info', event: 'auth_refused', requestId: 'r-1', code: 'expired' })
  })

  it('orders the levels debug < info < warn < error', () => {
    expect(logs('info', 'debug')).toBe(false)
    expect(logs('info', 'info')).toBe(true)
    expect(logs('error', 'warn')).toBe(false)
    expect(logs('debug', 'debug')).toBe(true)
  })

  it('still scrubs what it writes at debug', () => {
    const { log, lines } = capture('debug')
    log('debug', 'audit_written', { who: 'alice@example.com' })
    expect(JSON.stringify(lines[0]!.line)).not.toContain('alice@example.com')
  })
})

describe('parseConfig reads LOG_LEVEL', () => {
  const base = {
    AUTH_ISSUER: 'https://issuer.test',
    AUTH_AUDIENCE: 'https://bastion.test/mcp',
    AUTH_JWKS: JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] }),
  }

  it('defaults to info when unset or empty', () => {
    for (const LOG_LEVEL of [undefined, '', '  ']) {
      const r = parseConfig({ ...base, LOG_LEVEL })
      expect(r.ok && r.config.logLevel).toBe('info')
    }
  })

  it('accepts each documented level, case-insensitively', () => {
    for (const level of LOG_LEVELS) {
      const r = parseConfig({ ...base, LOG_LEVEL: level.toUpperCase() })
      expect(r.ok && r.config.logLevel).toBe(level)
    }
  })

  it('refuses an unknown level naming the setting', () => {
    const r = parseConfig({ ...base, LOG_LEVEL: 'verbose' })
    expect(r).toEqual({ ok: false, setting: 'LOG_LEVEL', problem: 'must be one of debug, info, warn, error' })
  })
})
