import { describe, expect, it } from 'vitest'
import { capJson, redact, redactText } from '../../src/audit/redact.ts'

const POLICY_KEYS: ReadonlySet<string> = new Set(['email', 'phone', 'address'])
const JWT = 'eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMH0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU'
const bytes = (s: string) => new TextEncoder().encode(s).length

describe('redact: sensitive keys', () => {
  it('values under sensitive keys are redacted at any depth, in objects and arrays', () => {
    const input = {
      customerId: 'cus_001',
      contact: { email: 'ada@acme.example', phone: '+14155550123', nested: [{ address: '1 Main St' }, { name: 'Ada' }] },
    }
    expect(redact(input, POLICY_KEYS)).toEqual({
      customerId: 'cus_001',
      contact: { email: '[redacted]', phone: '[redacted]', nested: [{ address: '[redacted]' }, { name: 'Ada' }] },
    })
  })

  it('key matching ignores case, underscores and dashes', () => {
    const out = redact({ EMAIL: 'x', Phone_Number: 1, 'e-mail': 'y', apiKey: 'k', API_KEY: 'k2' }, new Set(['email', 'phone_number']))
    expect(out).toEqual({ EMAIL: '[redacted]', Phone_Number: '[redacted]', 'e-mail': '[redacted]', apiKey: '[redacted]', API_KEY: '[redacted]' })
  })

  it('a whole object or array under a sensitive key is redacted, not walked', () => {
    expect(redact({ address: { street: '1 Main St', city: 'Gotham' }, phone: ['1', '2'] }, POLICY_KEYS))
      .toEqual({ address: '[redacted]', phone: '[redacted]' })
  })

  it('credentials are redacted by key even when the policy does not list them', () => {
    const out = redact({ headers: { Authorization: 'Bearer abc', Cookie: 's=1' }, password: 'hunter2', access_token: 't' }, new Set())
    expect(out).toEqual({ headers: { Authorization: '[redacted]', Cookie: '[redacted]' }, password: '[redacted]', access_token: '[redacted]' })
  })

  it('the input is not mutated', () => {
    const input = { email: 'ada@acme.example', list: [{ phone: '+14155550123' }] }
    const copy = structuredClone(input)
    redact(input, POLICY_KEYS)
    expect(input).toEqual(copy)
  })

  it('non-JSON values are made safe: cycles, depth, bigint, dates, functions, undefined', () => {
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    expect(redact(cyclic, POLICY_KEYS)).toEqual({ a: 1, self: '[circular]' })
    let deep: unknown = 'bottom'
    for (let i = 0; i < 100; i += 1) deep = { d: deep }
    expect(JSON.stringify(redact(deep, POLICY_KEYS))).toContain('[too deep]')
    expect(redact({ n: 10n, d: new Date(0), f: () => 1, u: undefined, arr: [undefined] }, POLICY_KEYS))
      .toEqual({ n: '10', d: '1970-01-01T00:00:00.000Z', arr: [null] })
    const shared = { x: 1 }
    expect(redact({ a: shared, b: shared }, POLICY_KEYS)).toEqual({ a: { x: 1 }, b: { x: 1 } })
  })
})

describe('redact: personal data and tokens in free text', () => {
  it('emails, phones and JWTs in free text never reach the log, at any depth', () => {
    const ticket = {
      customerId: 'cus_001',
      subject: 'Call back',
      body: `Please reach Ada at ada.lovelace@acme.example or +1 (415) 555-0123; she pasted ${JWT} by mistake.`,
      tags: ['urgent', 'ops@acme.example'],
    }
    const out = redact(ticket, POLICY_KEYS)
    const text = JSON.stringify(out)
    expect(text).not.toContain('ada.lovelace@acme.example')
    expect(text).not.toContain('555-0123')
    expect(text).not.toContain('eyJ')
    expect(text).not.toContain('ops@acme.example')
    expect(out).toMatchObject({
      customerId: 'cus_001',
      body: 'Please reach Ada at [redacted-email] or [redacted-phone]; she pasted [redacted-token] by mistake.',
      tags: ['urgent', '[redacted-email]'],
    })
  })

  it('object keys are redacted too (maps keyed by email)', () => {
    expect(redact({ 'ada@acme.example': 1, 'bob@acme.example': 2 }, POLICY_KEYS))
      .toEqual({ '[redacted-email]': 1, '[redacted-email] #2': 2 })
  })

  it.each([
    ['E.164', 'call +14155550123 now', 'call [redacted-phone] now'],
    ['international groups', 'tel +44 20 7946 0958.', 'tel [redacted-phone].'],
    ['US with area code', '(415) 555-0123', '[redacted-phone]'],
    ['dashes', 'at 415-555-0123, thanks', 'at [redacted-phone], thanks'],
    ['dots', '415.555.0123', '[redacted-phone]'],
    ['local', 'ext 555-0123', 'ext [redacted-phone]'],
    ['after a colon', 'phone:+14155550123', 'phone:[redacted-phone]'],
    ['tel: URI', 'tel:555-0123', 'tel:[redacted-phone]'],
    ['bare long run', 'number 4155550123', 'number [redacted-phone]'],
  ])('phone numbers are redacted: %s', (_name, input, expected) => {
    expect(redactText(input)).toBe(expected)
  })

  it.each([
    ['ids', 'order ord_0001 for cus_042, sku HW-0001, ticket tkt_9f3a21'],
    ['dates and times', 'created 2026-01-15T10:30:00.000Z, due 2026-02-01 09:00, on 15.01.2026'],
    ['money and counts', 'total 129900 cents, qty 3, price 1299.00, 129999.00'],
    ['JSON numbers', '{"total_cents":1299000000,"quantity":3}'],
    ['UUID', 'request 550e8400-e29b-41d4-a716-446655440000'],
    ['IPv4 and versions', 'from 192.168.100.200 running v1.22.333'],
    ['times', 'at 12:30:45'],
    ['prose', 'Basic questions about the Bearer of this note'],
  ])('ordinary data is left alone: %s', (_name, input) => {
    expect(redactText(input)).toBe(input)
  })

  it.each([
    ['email', 'from ada.lovelace+billing@acme-corp.example.co.uk.', 'from [redacted-email].'],
    ['unicode email', 'Müller@exämple.de', '[redacted-email]'],
    ['JWT', `token ${JWT} end`, 'token [redacted-token] end'],
    ['unsigned JWT', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', '[redacted-token]'],
    ['Bearer header', 'Authorization: Bearer abc123def456ghi', 'Authorization: [redacted-token]'],
    ['Bearer JWT', `authorization: bearer ${JWT}`, 'authorization: [redacted-token]'],
    ['Basic header', 'Authorization: Basic dXNlcjpwYXNzd29yZA==', 'Authorization: [redacted-token]'],
    ['query parameter', 'GET /cb?access_token=abcdef123&state=1', 'GET /cb?access_token=[redacted-token]&state=1'],
    ['JSON password', '{"password": "hunter22"}', '{"password": "[redacted-token]"}'],
    ['API key', 'key sk_live_abcdefgh12345678', 'key [redacted-token]'],
    ['GitHub token', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789', '[redacted-token]'],
  ])('secrets and addresses are redacted: %s', (_name, input, expected) => {
    expect(redactText(input)).toBe(expected)
  })

  // Catastrophic backtracking on 256 KiB of these would not finish within the
  // test timeout (which bounds a hang; speed itself is in `npm run bench:micro`).
  it('redacts 256 KiB of hostile repetitions without catastrophic backtracking', { timeout: 20_000 }, () => {
    const hostile = ['eyJa-', '1 ', '(1) ', 'a', 'a.', 'x@a.', '+1', 'Bearer ', 'token=', '-----BEGIN RSA PRIVATE KEY-----', '١ ']
    for (const unit of hostile) {
      const text = unit.repeat(Math.floor(256 * 1024 / unit.length))
      const out = redactText(text)
      expect(typeof out, unit).toBe('string')
      expect(out.length, unit).toBeGreaterThan(0)
    }
  })
})

describe('capJson', () => {
  it('JSON within the cap is returned unchanged', () => {
    expect(capJson({ a: 1 }, 100)).toBe('{"a":1}')
    expect(capJson(undefined, 100)).toBe('null')
    expect(capJson({ n: 1n }, 100)).toBe('{"n":"1"}')
  })

  it('longer JSON is cut to the byte cap with a visible marker counting the dropped bytes', () => {
    const value = { body: 'x'.repeat(10_000) }
    const json = JSON.stringify(value)
    const out = capJson(value, 1024)
    expect(bytes(out)).toBeLessThanOrEqual(1024)
    const match = /…\[truncated (\d+) bytes\]$/.exec(out)
    expect(match).not.toBeNull()
    const kept = out.slice(0, match?.index)
    expect(json.startsWith(kept)).toBe(true)
    expect(bytes(kept) + Number(match?.[1])).toBe(bytes(json))
  })

  it('never splits a multi-byte character, whatever the cap', () => {
    const value = { text: 'é€😀'.repeat(200) }
    const json = JSON.stringify(value)
    for (let cap = 40; cap <= 200; cap += 1) {
      const out = capJson(value, cap)
      expect(bytes(out), `cap ${cap}`).toBeLessThanOrEqual(cap)
      expect(out, `cap ${cap}`).not.toContain('\uFFFD')
      const kept = out.slice(0, out.indexOf('…[truncated'))
      expect(json.startsWith(kept), `cap ${cap}`).toBe(true)
    }
  })

  it('a cap smaller than the marker still respects the cap', () => {
    const out = capJson({ body: 'x'.repeat(1000) }, 10)
    expect(bytes(out)).toBeLessThanOrEqual(10)
    expect(capJson({ body: 'x' }, 0)).toBe('')
  })

  it('unserializable values do not throw', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(capJson(cyclic, 100)).toBe('"[unserializable]"')
  })
})

describe('identifiers are not personal data', () => {
  it('keeps request ids and other UUIDs whose first groups are digits intact', () => {
    const ids = ['63799822-9136-4236-b2ec-95fc75e2956b', '12345678-1234-1234-1234-123456789012']
    for (const id of ids) expect(redactText(`request ${id} failed`)).toBe(`request ${id} failed`)
  })

  it('still redacts a phone number next to a request id', () => {
    expect(redactText('63799822-9136-4236-b2ec-95fc75e2956b: call 555-123-4567')).toBe('63799822-9136-4236-b2ec-95fc75e2956b: call [redacted-phone]')
  })
})

describe('redaction gaps of issue #13 (item 5)', () => {
  const KEYS: ReadonlySet<string> = new Set(['email', 'phone', 'address'])

  it.each([
    ['a bare 16-digit card number', 'paid with 4111111111111111 today', 'paid with [redacted-card] today'],
    ['a card number in groups of four with spaces', 'card 4111 1111 1111 1111 ok', 'card [redacted-card] ok'],
    ['a card number in groups of four with dashes', 'card 5555-5555-5555-4444.', 'card [redacted-card].'],
    ['a 15-digit Amex number', 'amex 378282246310005', 'amex [redacted-card]'],
    ['a 13-digit card number', 'old visa 4222222222222', 'old visa [redacted-card]'],
    ['a 19-digit card number', 'card 6304000000000000000', 'card [redacted-card]'],
    ['a card number right after a label', 'card:4111111111111111', 'card:[redacted-card]'],
  ])('redacts %s', (_name, text, expected) => {
    expect(redactText(text)).toBe(expected)
  })

  it('a 16-digit run that fails the Luhn check is still redacted (as a long number), never kept', () => {
    expect(redactText('ref 4111111111111112')).toBe('ref [redacted-phone]')
    expect(redactText('ref 12345678901234567890123')).toBe('ref [redacted-phone]')
  })

  it.each([
    ['Tel:', 'Tel:+14155550123'], ['TEL:', 'TEL:4155550123'], ['tel:', 'tel:415-555-0123'], ['phone:', 'phone:4155550123'],
    ['PHONE:', 'PHONE:415-555-0123'], ['Phone:', 'Phone:(415) 555-0123'], ['fax:', 'fax:(415) 555-0123'], ['FAX:', 'FAX:4155550123'],
    ['Mobile:', 'Mobile:415 555 0123'],
  ])('redacts a number glued to the label %s, in any case', (label, text) => {
    expect(redactText(`${text} please`)).toBe(`${label}[redacted-phone] please`)
  })

  it.each([
    ['en dashes', 'call 415\u2013555\u20130123'],
    ['non-breaking hyphens (U+2011)', 'call 415\u2011555\u20110123'],
    ['slashes', 'call 415/555/0123'],
    ['full-width digits', 'call \uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13'],
    ['full-width digits and full-width hyphens', 'call \uff14\uff11\uff15\uff0d\uff15\uff15\uff15\uff0d\uff10\uff11\uff12\uff13'],
    ['full-width plus and ideographic spaces', 'call \uff0b\uff11\u3000\uff14\uff11\uff15\u3000\uff15\uff15\uff15\u3000\uff10\uff11\uff12\uff13'],
  ])('redacts a phone number written with %s', (_name, text) => {
    expect(redactText(text)).toBe('call [redacted-phone]')
  })

  it('redacts an e-mail address with a full-width at sign', () => {
    expect(redactText('write to ada\uff20acme.example now')).toBe('write to [redacted-email] now')
  })

  it.each([
    ['secret=', 'secret=hunter2abc', 'secret=[redacted-token]'],
    ['Secret: "…"', 'Secret: "s3cr3tvalue"', 'Secret: "[redacted-token]"'],
    ['password=', 'password=hunter22', 'password=[redacted-token]'],
    ['PASSWORD =', 'PASSWORD = hunter22', 'PASSWORD = [redacted-token]'],
    ['pwd=', 'login pwd=hunter22 ok', 'login pwd=[redacted-token] ok'],
    ['token=', 'token=abcdefgh', 'token=[redacted-token]'],
    ['passphrase:', 'passphrase: correct-horse', 'passphrase: [redacted-token]'],
  ])('redacts the value after %s in free text', (_name, text, expected) => {
    expect(redactText(text)).toBe(expected)
  })

  it('keeps what is not personal data: dates, times, prices, versions, IPs, paths, ratios, ids, short full-width numbers', () => {
    const text = 'order 2026-01-15 at 12:30:45, price 12.50, id ord_0001, v1.2.3, ip 10.0.0.1, 01/15/2026, /a/12345/67890, 3/4, \uff14\uff11\uff15 items'
    expect(redactText(text)).toBe(text)
  })

  it('keeps UUIDs whose groups are all digits (they are not cards)', () => {
    const id = '41111111-1111-1111-1111-111111111111'
    expect(redactText(`request ${id}`)).toBe(`request ${id}`)
  })

  it.each(['phoneNumber', 'PhoneNumber', 'phone_number', 'EMAIL_ADDRESS', 'emailAddress', 'e-mail', 'contactEmail', 'mobile', 'Mobile', 'mobileNumber', 'tel', 'fax', 'cellPhone', 'homeAddress', 'street_address', 'billing.address'])(
    'redacts the value under the key %s (case and camelCase/snake_case/kebab-case normalised, synonyms of phone/email/address)',
    (key) => {
      expect(redact({ [key]: 'Mainstreet 1', id: 'cus_001' }, KEYS)).toEqual({ [key]: '[redacted]', id: 'cus_001' })
    },
  )

  it('does not redact keys that merely contain a sensitive word inside another word', () => {
    const input = { telemetry: 1, cellar: 'x', mailbox_count: 2, customerId: 'cus_001', status: 'paid' }
    expect(redact(input, KEYS)).toEqual({ ...input, mailbox_count: 2 })
  })

  it('credential keys are matched by word too: accessToken, API-Key, clientSecret', () => {
    expect(redact({ accessToken: 'a', 'API-Key': 'b', clientSecret: 'c', keep: 'd' }, new Set())).toEqual({ accessToken: '[redacted]', 'API-Key': '[redacted]', clientSecret: '[redacted]', keep: 'd' })
  })

  it('redaction of full-width and card text stays fast on hostile input', () => {
    for (const unit of ['4111 ', '1-', '\uff11\uff0d', '\uff11 ', '1/', 'tel:1 ']) {
      const text = unit.repeat(Math.ceil(100_000 / unit.length))
      const out = redactText(text)
      expect(out.length, unit).toBeGreaterThan(0)
    }
  })
})

describe('dates are not phone numbers, also in lists and parentheses', () => {
  it('keeps "(supported versions: 2025-11-25, 2024-10-07, 2026-07-28)" and "2024-10-07 2026-07-28"', () => {
    for (const text of ['(supported versions: 2025-11-25, 2024-10-07, 2026-07-28)', 'versions 2024-10-07 2026-07-28', 'on (2026-01-15)']) {
      expect(redactText(text)).toBe(text)
    }
    expect(redactText('call (415) 555-0123')).toBe('call [redacted-phone]')
  })
})

describe('redact: what it remembers between calls changes no result', () => {
  it('a key is judged against the key set of the call: "body" is redacted with a set that names it and kept with one that does not, in any order', () => {
    const withBody: ReadonlySet<string> = new Set(['email', 'body'])
    for (let i = 0; i < 3; i += 1) {
      expect(redact({ body: 'hello', email: 'x' }, POLICY_KEYS)).toEqual({ body: 'hello', email: '[redacted]' })
      expect(redact({ body: 'hello', email: 'x' }, withBody)).toEqual({ body: '[redacted]', email: '[redacted]' })
    }
  })

  it('a key holding personal data or a credential is redacted on every call, not only the first', () => {
    const input = { 'ada@acme.example': 1, [`Bearer ${JWT}`]: 2, '+1 415 555 0123': 3, 'Ｔｅｌ': 4 }
    const first = redact(input, POLICY_KEYS)
    for (let i = 0; i < 3; i += 1) expect(redact(input, POLICY_KEYS)).toEqual(first)
    expect(JSON.stringify(first)).not.toMatch(/ada@|eyJ|555/)
  })

  it('many distinct caller-chosen keys give the same results as fresh calls (the remembered keys are bounded)', () => {
    const keys = Array.from({ length: 3000 }, (_, i) => (i % 3 === 0 ? `phone_${i}` : i % 3 === 1 ? `field_${i}` : `e${i}@x.example`))
    const input = Object.fromEntries(keys.map((k) => [k, `value ${k}`]))
    const once = redact(input, POLICY_KEYS)
    expect(redact(input, POLICY_KEYS)).toEqual(once)
    expect((once as Record<string, string>)['phone_0']).toBe('[redacted]')
    expect((once as Record<string, string>)['field_1']).toBe('value field_1')
  })

  it('full-width digits and signs are folded whether or not earlier text had any (the fold check is per string)', () => {
    expect(redactText('call ０１２３ ４５６ ７８９０ now')).toBe('call [redacted-phone] now')
    expect(redactText('call 0123 456 7890 now')).toBe('call [redacted-phone] now')
    expect(redactText('ada＠acme.example')).toBe('[redacted-email]')
    expect(redact({ a: 'plain', b: '＋１ ４１５ ５５５ ０１２３' }, POLICY_KEYS)).toEqual({ a: 'plain', b: '[redacted-phone]' })
  })
})

describe('redaction of non-ASCII digits, more credential formats and more sensitive keys', () => {
  it.each([
    ['Arabic-Indic digits', 'call +١٥٥٥٠٧٠٠٢٧٤ now', 'call [redacted-phone] now'],
    ['Eastern Arabic-Indic digits', 'tel ۰۲۱۵۵۵۰۱۲۳۴', 'tel [redacted-phone]'],
    ['Devanagari digits in groups', '+९१ ९८७६५ ४३२१०', '[redacted-phone]'],
  ])('redacts a phone number written in %s', (_name, input, expected) => {
    expect(redactText(input)).toBe(expected)
  })

  it('keeps short non-ASCII numbers and dates that are no phone number', () => {
    expect(redactText('order ١٢٣ done')).toBe('order ١٢٣ done')
    expect(redactText('٢٠٢٦-٠٧-٢٨')).toBe('٢٠٢٦-٠٧-٢٨')
  })

  it.each([
    ['a GitLab token', 'glpat-abcdefghij1234567890'],
    ['a Google API key', 'AIzaSyA1234567890abcdefghijklmnopqrstuv'],
    ['a Google OAuth access token', 'ya29.a0AfH6SMBx1234567890abcdefgh'],
    ['an npm token', 'npm_abcdefghijklmnopqrstuvwxyz0123456789'],
    ['a PEM RSA private key', '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc==\n-----END RSA PRIVATE KEY-----'],
    ['a PEM PKCS#8 private key', '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----'],
    ['a PEM OpenSSH private key', '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----'],
    ['an encrypted PEM private key', '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0w\n-----END ENCRYPTED PRIVATE KEY-----'],
    ['a PEM private key cut before its footer', '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB'],
  ])('never lets %s into the audit log', (_name, secret) => {
    const out = redactText(`before ${secret} after`)
    // A PEM key without its footer is redacted to the end of the (bounded) body.
    const cut = secret.startsWith('-----BEGIN') && !secret.includes('-----END')
    expect(out).toBe(`before [redacted-token]${cut ? '' : ' after'}`)
  })

  it.each(['Phone2', 'phones', 'EMAILS', 'addresses', 'ssn', 'jwt', 'credentials', 'homePhone2'])('redacts the value under the key %s', (key) => {
    expect(redact({ [key]: 'secret-value' }, POLICY_KEYS)).toEqual({ [key]: '[redacted]' })
  })

  it.each(['shipping_cost', 'emailed_at', 'status', 'tokens', 'returnedTokens'])('keeps the value under the near-miss key %s', (key) => {
    expect(redact({ [key]: 'kept' }, POLICY_KEYS)).toEqual({ [key]: 'kept' })
  })
})
