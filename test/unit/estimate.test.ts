// Unit tests of the token estimator. The reference counts in MEASURED were
// taken once with gpt-tokenizer 4.0.0 (o200k_base = GPT-4o/5, cl100k_base =
// GPT-4) on the fixture texts built below, and are kept here as literals so
// the test needs no tokenizer. The estimator is calibrated against the larger
// of the two (see the header of src/limits/estimate.ts).
import { describe, expect, it } from 'vitest'
import { prng as mulberry32 } from '../../scripts/demo-data.ts'
import { estimateTokens } from '../../src/limits/estimate.ts'


function randomString(seed: number, alphabet: string, length: number): string {
  const rand = mulberry32(seed)
  let out = ''
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(rand() * alphabet.length)]
  return out
}

const pad = (n: number, w: number) => String(n).padStart(w, '0')

function orders(n: number): Record<string, unknown>[] {
  const statuses = ['pending', 'paid', 'shipped', 'delivered', 'cancelled']
  const notes = [null, 'gift wrap requested', null, 'deliver to loading dock']
  return Array.from({ length: n }, (_, i) => ({
    id: `ord_${pad(i + 1, 4)}`,
    customer_id: `cus_${pad((i * 7) % 60 + 1, 3)}`,
    product_id: `prd_${pad((i * 13) % 120 + 1, 3)}`,
    quantity: 1 + (i % 5),
    total_cents: (1 + (i % 5)) * (2900 + 250 * (i % 40)),
    status: statuses[i % 5],
    note: notes[i % 4],
    created_at: new Date(Date.UTC(2026, 0, 6, 9, 0, 0) + i * 311 * 60_000).toISOString().replace('.000', ''),
    updated_at: new Date(Date.UTC(2026, 0, 6, 9, 0, 0) + i * 311 * 60_000).toISOString().replace('.000', ''),
  }))
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

const FIXTURE_TEXT: Record<string, string> = {
  'customer JSON': JSON.stringify({ id: 'cus_007', name: 'Grace Hopper', company: 'Globex Labs', email: 'grace.hopper.7@globex.example', phone: '+15551234567', address: '42 Elm St, Springfield', tier: 'gold', created_at: '2026-01-05T20:19:00Z' }),
  '20 orders JSON': JSON.stringify({ orders: orders(20), nextCursor: 'eyJvZmZzZXQiOjIwfQ' }),
  '8 orders pretty JSON': JSON.stringify({ orders: orders(8) }, null, 2),
  'SQL rows JSON': JSON.stringify({ columns: ['id', 'status', 'total_cents', 'created_at'], rows: orders(30).map((o) => [o.id, o.status, o.total_cents, o.created_at]), rowCount: 30 }),
  'tool arguments': JSON.stringify({ customerId: 'cus_042', subject: 'Order arrived damaged', body: 'The keyboard in order ord_0107 arrived with a cracked case. Please send a replacement or refund the order.', priority: 'high' }),
  'English prose': 'Token budgets protect the model and the caller alike. When a tool returns more rows than fit, the server keeps the first ones, drops the rest, and says so in a short notice, so that the model can narrow its query instead of reading a wall of data it never asked for. Estimates err on the high side on purpose.',
  'TypeScript code': "export async function listOrders(db: D1Database, customerId?: string, limit = 20): Promise<Order[]> {\n  const sql = customerId ? 'SELECT * FROM orders WHERE customer_id = ? LIMIT ?' : 'SELECT * FROM orders LIMIT ?'\n  const stmt = customerId ? db.prepare(sql).bind(customerId, limit) : db.prepare(sql).bind(limit)\n  const { results } = await stmt.all<Order>()\n  return results\n}\n",
  'base64 blob JSON': JSON.stringify({ name: 'scan.png', mime: 'image/png', data: randomString(1, B64, 4000) }),
  'hex digests': JSON.stringify({ sha256: Array.from({ length: 20 }, (_, i) => randomString(100 + i, '0123456789abcdef', 64)) }),
  'long digits': randomString(7, '0123456789', 2000),
  'UUIDs': JSON.stringify(Array.from({ length: 40 }, (_, i) => { const h = randomString(200 + i, '0123456789abcdef', 32); return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}` })),
  'random printable': randomString(3, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~', 2000),
  'Chinese text': '客户反馈说订单还没有发货，请尽快核实物流信息并回复客户。我们的系统显示该订单已于三天前付款，但仓库尚未确认出库。'.repeat(4),
  'Japanese JSON': JSON.stringify({ subject: '配送について', body: 'お客様から注文がまだ届いていないとの連絡がありました。配送状況を確認し、できるだけ早くご返信ください。'.repeat(3) }),
  'Russian text': 'Клиент сообщил, что заказ до сих пор не доставлен. Пожалуйста, проверьте статус доставки и ответьте клиенту как можно скорее.'.repeat(3),
  'Arabic text': 'أبلغ العميل أن الطلب لم يصل بعد. يرجى التحقق من حالة الشحن والرد على العميل في أقرب وقت ممكن.'.repeat(3),
  'Hindi text': 'ग्राहक ने बताया कि ऑर्डर अभी तक नहीं पहुंचा है। कृपया डिलीवरी की स्थिति जांचें और जल्द से जल्द जवाब दें।'.repeat(3),
  'emoji': '🎉🚀 shipped! 👍❤️ thanks 🙏 📦✅ 👨‍👩‍👧 family order 🇺🇸 '.repeat(6),
  'Polish/Finnish name list JSON': JSON.stringify({ items: ['Wybrzeże Kości Słoniowej', 'Republika Federalna Niemiec', 'Etiopska Republika Ludowo-Demokratyczna', 'Mołdawia', 'Azerbejdżan', 'Kookossaaret', 'Viron tasavalta', 'Ruotsin kuningaskunta', 'Falklandinsaaret', 'Indonesian tasavalta', 'Seychellien tasavalta', 'Zimbabwen tasavalta'] }),
  'ISO timestamps': JSON.stringify(Array.from({ length: 50 }, (_, i) => new Date(Date.UTC(2026, 2, 1) + i * 3_723_000).toISOString())),
}

/** [fixture, characters, o200k tokens, cl100k tokens] */
const MEASURED: [string, number, number, number][] = [
  ['customer JSON', 210, 67, 69],
  ['20 orders JSON', 4254, 1538, 1534],
  ['8 orders pretty JSON', 2354, 859, 858],
  ['SQL rows JSON', 1635, 791, 754],
  ['tool arguments', 192, 43, 42],
  ['English prose', 309, 67, 67],
  ['TypeScript code', 378, 95, 92],
  ['base64 blob JSON', 4048, 2768, 2902],
  ['hex digests', 1352, 763, 760],
  ['long digits', 2000, 667, 667],
  ['UUIDs', 1561, 935, 935],
  ['random printable', 2000, 1474, 1506],
  ['Chinese text', 224, 156, 208],
  ['Japanese JSON', 183, 108, 175],
  ['Russian text', 375, 94, 138],
  ['Arabic text', 279, 81, 186],
  ['Hindi text', 312, 99, 321],
  ['emoji', 360, 169, 253],
  ['Polish/Finnish name list JSON', 280, 96, 104],
  ['ISO timestamps', 1351, 801, 801],
]

/** The price of soundness: how far above the real count the bound may be on these fixtures. */
const MAX_RATIO = 2
const MAX_RATIO_JSON = 1.6
const MAX_RATIO_NON_LATIN = 5 // charged by UTF-8 bytes: 2.5-5x their real count
const NON_LATIN = new Set(['Chinese text', 'Japanese JSON', 'Russian text', 'Arabic text', 'Hindi text'])

const BUSINESS_JSON = new Set(['customer JSON', '20 orders JSON', '8 orders pretty JSON', 'SQL rows JSON'])

describe('estimateTokens', () => {
  it('is 0 for the empty string and at least 1 otherwise', () => {
    expect(estimateTokens('')).toBe(0)
    for (const s of ['a', ' ', '\n', '{', '7', 'é', '字', '😀']) expect(estimateTokens(s)).toBeGreaterThanOrEqual(1)
  })

  it('builds the fixtures it was measured on', () => {
    expect(Object.keys(FIXTURE_TEXT).sort()).toEqual(MEASURED.map(([name]) => name).sort())
    for (const [name, chars] of MEASURED) expect(FIXTURE_TEXT[name]!.length, name).toBe(chars)
  })

  it.each(MEASURED)('%s: never more than a tenth below the real count, and within its ceiling above it', (name, _chars, o200k, cl100k) => {
    const reference = Math.max(o200k, cl100k)
    const estimate = estimateTokens(FIXTURE_TEXT[name]!)
    expect(estimate).toBeGreaterThanOrEqual(0.9 * reference)
    const ceiling = BUSINESS_JSON.has(name) ? MAX_RATIO_JSON : NON_LATIN.has(name) ? MAX_RATIO_NON_LATIN : MAX_RATIO
    expect(estimate).toBeLessThanOrEqual(ceiling * reference)
  })

  it('counts what bytes/4 misses: random data, digits and timestamps', () => {
    // bytes/4 is 35-75 % of the real count on these; the estimate is within 10 %
    for (const name of ['base64 blob JSON', 'hex digests', 'UUIDs', 'random printable', 'ISO timestamps']) {
      const text = FIXTURE_TEXT[name]!
      const [, , o200k, cl100k] = MEASURED.find(([n]) => n === name)!
      expect(new TextEncoder().encode(text).length / 4, name).toBeLessThan(0.8 * Math.max(o200k, cl100k))
      expect(estimateTokens(text), name).toBeGreaterThanOrEqual(0.9 * Math.max(o200k, cl100k))
    }
  })

  it('grows with the text: prefixes never cost more than the whole', () => {
    for (const text of Object.values(FIXTURE_TEXT)) {
      let previous = 0
      for (let end = 0; end <= text.length; end += Math.max(1, Math.floor(text.length / 37))) {
        const estimate = estimateTokens(text.slice(0, end))
        // cutting inside a listed word makes it an unlisted one, charged by
        // its letters: up to ~10 tokens more than the whole word
        expect(estimate).toBeGreaterThanOrEqual(previous - 12)
        previous = Math.max(previous, estimate)
      }
      expect(estimateTokens(text)).toBeGreaterThanOrEqual(previous - 12)
    }
  })

  it('is nearly additive over concatenation', () => {
    const texts = Object.values(FIXTURE_TEXT)
    for (let i = 0; i < texts.length; i++) {
      const a = texts[i]!
      const b = texts[(i + 5) % texts.length]!
      const joined = estimateTokens(a + b)
      expect(joined).toBeLessThanOrEqual(estimateTokens(a) + estimateTokens(b) + 4)
      expect(joined).toBeGreaterThanOrEqual(estimateTokens(a) + estimateTokens(b) - 4)
    }
  })

  it('scales linearly with repetition', () => {
    const row = FIXTURE_TEXT['customer JSON']!
    const one = estimateTokens(row)
    const hundred = estimateTokens(Array.from({ length: 100 }, () => row).join(','))
    expect(hundred).toBeGreaterThanOrEqual(95 * one)
    expect(hundred).toBeLessThanOrEqual(101 * one)
  })

  it('follows the pre-tokenizer rules it models', () => {
    expect(estimateTokens('1234567')).toBe(3) // digits go three to a token
    expect(estimateTokens('{"a":1}')).toBe(estimateTokens('{"b":2}'))
    expect(estimateTokens('customerId')).toBe(2) // split at the capital: two listed words
    expect(estimateTokens('customerid')).toBeGreaterThan(5) // an unlisted run pays by the letter
    expect(estimateTokens('[everything')).toBe(3) // a single mark before a word can split it: "[e|very|thing"
    expect(estimateTokens('":"')).toBe(1) // a listed mark sequence
    expect(estimateTokens('a'.repeat(5000))).toBeGreaterThan(625) // 8 letters a token at best
    expect(estimateTokens(' '.repeat(5000))).toBeGreaterThanOrEqual(40)
    expect(estimateTokens('{}'.repeat(2500))).toBeGreaterThanOrEqual(0.9 * 2500)
  })

  it('does not split surrogate pairs into two charges or choke on lone surrogates', () => {
    // a pair is one astral character (its 4 UTF-8 bytes), not two lone surrogates (3 + 3: each encodes as U+FFFD)
    expect(estimateTokens('😀'.repeat(100))).toBe(400)
    expect(estimateTokens('\ude00'.repeat(100) + '\ud83d'.repeat(100))).toBe(600) // 200 lone surrogates (low before high): charged one by one
    expect(estimateTokens('\ud83d \ude00')).toBeGreaterThan(estimateTokens('\ud83d\ude00')) // a space between breaks the pair
    expect(estimateTokens('\ud83d')).toBeGreaterThanOrEqual(1)
    expect(estimateTokens('\ude00x')).toBeGreaterThanOrEqual(1)
  })
})
