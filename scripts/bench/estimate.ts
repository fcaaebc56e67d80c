// Cost of the token estimator and of output capping.
//   npx tsx scripts/bench/estimate.ts
// Prints one line per metric: estimateTokens median and p95 per call on 1 KB,
// 10 KB and 100 KB of demo-data JSON, and capStructured on a 500-row result
// over the 10 000-token cap. When gpt-tokenizer (a dev dependency) is
// installed, it also prints the estimator's error against o200k_base and
// cl100k_base on payloads built here (never below -10 %: the estimate's contract),
// next to bytes/4 for comparison.
import { capStructured, truncationMarker } from '../../src/limits/cap-output.ts'
import { estimateTokens } from '../../src/limits/estimate.ts'
import { demoDataStatements } from '../demo-data.ts'

type Row = Record<string, string | number | null>

/** The demo data's rows, read back from its INSERT statements. */
function demoRows(): Record<string, Row[]> {
  const tables: Record<string, Row[]> = {}
  for (const statement of demoDataStatements({ customers: 400, products: 400, orders: 3000 })) {
    const m = /INTO (\w+) \(([^)]*)\) VALUES \((.*)\);$/.exec(statement)
    if (!m) continue
    const columns = m[2]!.split(', ')
    const values: (string | number | null)[] = []
    const src = m[3]!
    let i = 0
    while (i < src.length) {
      if (src[i] === "'") {
        let j = i + 1
        let text = ''
        for (;;) {
          if (src[j] === "'" && src[j + 1] === "'") {
            text += "'"
            j += 2
          } else if (src[j] === "'") break
          else text += src[j++]
        }
        values.push(text)
        i = j + 1
      } else {
        let j = src.indexOf(',', i)
        if (j < 0) j = src.length
        const token = src.slice(i, j).trim()
        values.push(token === 'NULL' ? null : Number(token))
        i = j
      }
      while (src[i] === ',' || src[i] === ' ') i++
    }
    const row: Row = {}
    columns.forEach((c, k) => (row[c] = values[k] ?? null))
    const rows = (tables[m[1]!] ??= [])
    rows.push(row)
  }
  return tables
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** Per-call times in µs: `samples` timed batches of `batch` calls each. */
function time(fn: () => number, samples: number, batch: number): number[] {
  let sink = 0
  for (let i = 0; i < Math.max(200, samples); i++) sink += fn() // warm-up
  const out: number[] = []
  for (let s = 0; s < samples; s++) {
    const start = performance.now()
    for (let b = 0; b < batch; b++) sink += fn()
    out.push(((performance.now() - start) * 1000) / batch)
  }
  if (sink === -1) console.log('') // keep the calls observable
  return out.sort((a, b) => a - b)
}

const fmt = (us: number) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`)

const tables = demoRows()
const orders = tables.orders!
const mixed = JSON.stringify({ customers: tables.customers, orders, products: tables.products })
for (const [label, size, samples, batch] of [
  ['1KB', 1024, 2000, 50],
  ['10KB', 10 * 1024, 1000, 10],
  ['100KB', 100 * 1024, 300, 1],
] as const) {
  const text = mixed.slice(0, size)
  const t = time(() => estimateTokens(text), samples, batch)
  console.log(`estimateTokens ${label.padEnd(5)} median ${fmt(percentile(t, 50))}  p95 ${fmt(percentile(t, 95))}  (${text.length} chars, ${estimateTokens(text)} tokens)`)
}

const result = { orders: orders.slice(0, 500), nextCursor: 'eyJvZmZzZXQiOjUwMH0' }
const capped = capStructured(result, 10_000)
const t = time(() => capStructured(result, 10_000).returnedTokens, 100, 1)
console.log(
  `capStructured 500 rows  median ${fmt(percentile(t, 50))}  p95 ${fmt(percentile(t, 95))}  (${JSON.stringify(result).length} chars, ${capped.originalTokens} → ${capped.returnedTokens} tokens, ${capped.value.orders.length} rows kept)`,
)
const big = { orders: orders.slice(0, 3000) }
const tBig = time(() => capStructured(big, 10_000).returnedTokens, 20, 1)
console.log(`capStructured 3000 rows median ${fmt(percentile(tBig, 50))}  p95 ${fmt(percentile(tBig, 95))}  (${JSON.stringify(big).length} chars)`)
console.log(`marker: ${truncationMarker(capped, 10_000)}`)

// Accuracy, when a real tokenizer is at hand.
type Count = (text: string) => number
async function load(spec: string): Promise<Count | undefined> {
  try {
    const mod = (await import(spec)) as { countTokens: Count }
    return mod.countTokens
  } catch {
    return undefined
  }
}
const o200k = await load('gpt-tokenizer/encoding/o200k_base')
const cl100k = await load('gpt-tokenizer/encoding/cl100k_base')
if (!o200k || !cl100k) {
  console.log('accuracy: skipped (npm i --no-save gpt-tokenizer@4.0.0 to compare with o200k_base and cl100k_base)')
} else {
  let seed = 7
  const rand = () => {
    seed = (seed * 1664525 + 1013904223) >>> 0
    return seed / 4294967296
  }
  const random = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('')
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  const prose =
    'Token budgets protect the model and the caller alike. When a tool returns more rows than fit, the server keeps the first ones, drops the rest, and says so in a short notice, so that the model can narrow its query instead of reading a wall of data it never asked for.'
  const corpus: [string, string][] = []
  for (const [name, rows] of Object.entries(tables)) {
    for (const n of [1, 10, 100]) {
      const slice = rows.slice(n, 2 * n)
      corpus.push([`json ${name}`, JSON.stringify({ [name]: slice })])
      corpus.push([`json ${name} pretty`, JSON.stringify({ [name]: slice }, null, 2)])
      const columns = Object.keys(slice[0]!)
      corpus.push([`sql rows ${name}`, JSON.stringify({ columns, rows: slice.map((r) => columns.map((c) => r[c])) })])
    }
  }
  for (const n of [500, 5000]) {
    corpus.push(['base64', JSON.stringify({ data: random(B64, n) })])
    corpus.push(['hex', JSON.stringify({ sha: random('0123456789abcdef', n) })])
    corpus.push(['digits', random('0123456789', n)])
  }
  corpus.push(['prose', prose.repeat(3)], ['prose in JSON', JSON.stringify({ body: prose.repeat(3) })])
  corpus.push(['Chinese', '客户反馈说订单还没有发货，请尽快核实物流信息并回复客户。'.repeat(10)])
  corpus.push(['Russian', 'Клиент сообщил, что заказ до сих пор не доставлен. Пожалуйста, проверьте статус доставки.'.repeat(5)])
  corpus.push(['emoji', '🎉🚀 shipped! 👍❤️ thanks 🙏 📦✅ '.repeat(20)])

  const bytes = new TextEncoder()
  for (const [label, estimate] of [
    ['estimateTokens', estimateTokens],
    ['bytes/4', (s: string) => Math.ceil(bytes.encode(s).length / 4)],
  ] as const) {
    for (const [refName, ref] of [
      ['o200k', o200k],
      ['cl100k', cl100k],
      ['max', (s: string) => Math.max(o200k(s), cl100k(s))],
    ] as const) {
      const errors = corpus.map(([, text]) => estimate(text) / ref(text) - 1)
      const mean = errors.reduce((a, b) => a + b, 0) / errors.length
      const worst = Math.min(...errors)
      const under = errors.filter((e) => e < -0.1).length
      console.log(
        `accuracy ${label} vs ${refName}  mean ${(mean * 100).toFixed(1)} %  worst under ${(worst * 100).toFixed(1)} %  worst over ${(Math.max(...errors) * 100).toFixed(1)} %  >10 % low: ${under}/${errors.length}`,
      )
    }
  }
}
