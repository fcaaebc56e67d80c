// The audit row's output digest reveals nothing redaction hid (issue #13,
// item 4): output_sha256 is the SHA-256 of the REDACTED output, so a redacted
// phone number or e-mail cannot be brute-forced from the row.
import { describe, expect, it } from 'vitest'
import type { Principal } from '../../src/auth/principal.ts'
import { REFUSAL_OUTCOMES } from '../../src/audit/chain.ts'
import { sha256Hex } from '../../src/digest.ts'
import { auditRecord, redactedJson } from '../../src/audit/record.ts'
import type { CallFacts } from '../../src/audit/record.ts'

const principal: Principal = { sub: 'alice', scopes: new Set(['customers:read']), roles: ['read-only'], tokenId: 'jti-1', clientId: undefined, claims: new Map() }

function facts(tool: string): CallFacts {
  return { requestId: 'req-1', startedAt: Date.parse('2026-12-02T00:00:00Z'), principal, method: 'tools/call', toolName: tool, toolArguments: {}, client: undefined }
}

async function digestOf(tool: string, output: unknown): Promise<string | null | undefined> {
  const record = await auditRecord(facts(tool), { outcome: 'ok', httpStatus: 200, outputJson: JSON.stringify(output) })
  return record.output_sha256
}

const customer = (phone: string, note = 'call me on ' + phone) => ({ id: 'cus_001', name: 'Ada', tier: 'gold', phone, note })

describe('audit digest of the output', () => {
  it('is not the SHA-256 of the unredacted output (which would let a redacted value be brute-forced)', async () => {
    const output = customer('+1 415 555 0123')
    const digest = await digestOf('get_customer', output)
    expect(digest).toMatch(/^[0-9a-f]{64}$/)
    expect(digest).not.toBe(await sha256Hex(JSON.stringify(output)))
  })

  it('is the same for two outputs that differ only in a redacted phone number (by key and in free text)', async () => {
    const a = await digestOf('get_customer', customer('+1 415 555 0123'))
    const b = await digestOf('get_customer', customer('+44 20 7946 0958'))
    expect(a).toBe(b)
  })

  it('is the same for outputs that differ only in an e-mail address (redacted as free text)', async () => {
    const a = await digestOf('get_customer', { id: 'cus_001', contactEmail: 'ada@acme.example' })
    const b = await digestOf('get_customer', { id: 'cus_001', contactEmail: 'bob@other.example' })
    expect(a).toBe(b)
  })

  it('still tells outputs apart that differ in what is not redacted', async () => {
    const a = await digestOf('get_customer', customer('+1 415 555 0123'))
    const b = await digestOf('get_customer', { ...customer('+1 415 555 0123'), tier: 'silver' })
    expect(a).not.toBe(b)
  })

  it('can be recomputed from the output the client received: SHA-256 of its redacted JSON', async () => {
    const output = customer('+1 415 555 0123')
    const redacted = { id: 'cus_001', name: 'Ada', tier: 'gold', phone: '[redacted]', note: 'call me on [redacted-phone]' }
    expect(await digestOf('get_customer', output)).toBe(await sha256Hex(JSON.stringify(redacted)))
  })

  it('keeps no digest of execute_query output, so an audit reader cannot confirm a guessed value behind a column alias', async () => {
    const output = JSON.stringify({ columns: ['a'], rows: [{ a: '771 Maple Dr, Riverdale' }], rowCount: 1 })
    const record = await auditRecord(facts('execute_query'), { outcome: 'ok', httpStatus: 200, outputJson: output })
    expect(record.output_excerpt).toBeNull()
    expect(record.output_sha256).toBeNull()
    expect(record.output_bytes).toBe(new TextEncoder().encode(output).byteLength)
  })
})

describe('audit record: caller-chosen text is capped and scrubbed (issue #13, item 5)', () => {
  async function recordFor(tool: string, sub = 'alice') {
    const f = facts(tool)
    return auditRecord({ ...f, principal: { ...principal, sub } }, { outcome: 'invalid_input', httpStatus: 200 })
  }

  it('an unknown tool name carrying an e-mail, a phone number or a token is redacted', async () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'
    expect((await recordFor('mail ada@acme.example')).tool).toBe('mail [redacted-email]')
    expect((await recordFor('call +1 415 555 0123')).tool).toBe('call [redacted-phone]')
    expect((await recordFor(`x ${jwt}`)).tool).toBe('x [redacted-token]')
  })

  it('a long tool name is capped at 128 characters', async () => {
    expect((await recordFor('t'.repeat(5000))).tool).toHaveLength(128)
    expect((await recordFor('\u{1f600}'.repeat(200))).tool).toBe('\u{1f600}'.repeat(128))
  })

  it('sub is capped at 256 characters and scrubbed of credentials, but an e-mail subject stays readable', async () => {
    expect((await recordFor('get_customer', 's'.repeat(10_000))).sub).toHaveLength(256)
    expect((await recordFor('get_customer', 'svc password=hunter22')).sub).toBe('svc password=[redacted-token]')
    expect((await recordFor('get_customer', 'ada@acme.example')).sub).toBe('ada@acme.example')
  })

  it('a known tool name is kept as it is', async () => {
    expect((await recordFor('get_customer')).tool).toBe('get_customer')
  })
})

describe('refusal rows are compact (issue #21, item 4)', () => {
  const big = (email: string) => ({ query: `SELECT * FROM customers WHERE email = '${email}' -- ${'x'.repeat(4096)}` })
  const refused = (args: unknown, outcome: (typeof REFUSAL_OUTCOMES)[number] = 'denied') =>
    auditRecord({ ...facts('execute_query'), toolArguments: args }, { outcome, httpStatus: 403, errorCode: 'insufficient_scope' })

  it('a refusal keeps at most 256 bytes of its redacted arguments, plus their whole size and digest', async () => {
    for (const outcome of REFUSAL_OUTCOMES) {
      const record = await refused(big('ada@example.com'), outcome)
      const whole = JSON.stringify({ query: big('[redacted-email]').query })
      expect(new TextEncoder().encode(record.input_json ?? '').byteLength).toBeLessThanOrEqual(256)
      expect(record.input_json).toContain('[truncated')
      expect(record.input_json).not.toContain('ada@example.com')
      expect(record.input_bytes).toBe(new TextEncoder().encode(whole).byteLength)
      expect(record.input_sha256).toBe(await sha256Hex(whole))
      expect(record.input_sha256).toBe(await sha256Hex(redactedJson(JSON.stringify(big('ada@example.com')), new Set())))
    }
  })

  it('the digest of refused arguments reveals nothing redaction hid: it is the same whatever the redacted values were', async () => {
    const a = await refused(big('ada@example.com'))
    const b = await refused(big('grace@example.org'))
    expect(a.input_sha256).toBe(b.input_sha256)
    const c = await refused({ ...big('ada@example.com'), query: big('ada@example.com').query + ' LIMIT 1' })
    expect(c.input_sha256).not.toBe(a.input_sha256)
  })

  it('a call that is not refused keeps 4 KiB of arguments and no argument size or digest', async () => {
    const record = await auditRecord({ ...facts('execute_query'), toolArguments: big('ada@example.com') }, { outcome: 'tool_error', httpStatus: 200 })
    const bytes = new TextEncoder().encode(record.input_json ?? '').byteLength
    expect(bytes).toBeGreaterThan(4000)
    expect(bytes).toBeLessThanOrEqual(4096)
    expect(record.input_bytes).toBeNull()
    expect(record.input_sha256).toBeNull()
  })

  it('a refusal without arguments has no argument columns', async () => {
    const record = await refused(undefined)
    expect([record.input_json, record.input_bytes, record.input_sha256]).toEqual([null, null, null])
  })
})
