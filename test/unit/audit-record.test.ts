// The audit row's output digest reveals nothing redaction hid (issue #13,
// item 4): output_sha256 is the SHA-256 of the REDACTED output, so a redacted
// phone number or e-mail cannot be brute-forced from the row.
import { describe, expect, it } from 'vitest'
import type { Principal } from '../../src/auth/principal.ts'
import { sha256Hex } from '../../src/audit/chain.ts'
import { auditRecord } from '../../src/audit/record.ts'
import type { CallFacts } from '../../src/audit/record.ts'

const principal: Principal = { sub: 'alice', scopes: new Set(['customers:read']), role: 'read-only', tokenId: 'jti-1', clientId: undefined }

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
