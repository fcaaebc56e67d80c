// Bench-only Worker entry (never deployed; scripts/bench/declared.ts starts it
// with wrangler.toml's bindings over a seeded local D1). POST
// /__bench/declared?case=<case>&n=N runs N sequential calls of one case inside
// workerd and answers when they are done; the runner times each request from
// outside (a Worker's own clocks advance only at I/O) and subtracts `noop`.
//   declared-get_customer / hand-get_customer, declared-search_products /
//   hand-search_products: the declared tool (tools.config.ts through
//   src/tools/declared.ts) vs the same tool hand-written with the same SQL;
//   query-unscoped / query-scoped: execute_query's executeReadOnly over the
//   shared legit queries, without and with a customer's row scope.
import * as z from 'zod'
import type { Principal } from '../../src/auth/principal.ts'
import { createDataAccess } from '../../src/db/queries.ts'
import { POLICY } from '../../src/policy/policy.ts'
import { parseRowScope, rowFilterFor } from '../../src/policy/row-scope.ts'
import { executeReadOnly, type ExecuteOptions } from '../../src/sql/execute.ts'
import { defineTool, notFound, type ToolContext, type ToolDefinition } from '../../src/tools/define.ts'
import { TOOLS } from '../../src/tools/index.ts'
import { BUSINESS_TABLES, LEGIT } from '../../test/support/sql-cases.ts'

export { LimiterObject } from '../../src/limits/embedded.ts'
export { DpopReplay } from '../../src/auth/dpop-replay.ts'
export { AuditSequencer } from '../../src/audit/sequencer.ts'

const opts: ExecuteOptions = { allowedTables: BUSINESS_TABLES, maxRows: POLICY.maxQueryRows, maxBytes: POLICY.maxQueryBytes, maxVisitedRows: POLICY.maxQueryVisitedRows }
const principal: Principal = { sub: 'bench', scopes: new Set(POLICY.scopes.keys()), roles: [], tokenId: 'bench', clientId: undefined, claims: new Map([['customer', 'cus_007']]) }
const SCOPE = parseRowScope('customers.id=claim.customer,orders.customer_id=claim.customer,tickets.customer_id=claim.customer', undefined, new Set(POLICY.roles.keys()))
const FILTER = rowFilterFor(SCOPE, principal)
const QUERIES = LEGIT.map((c) => c.sql)

/** The hand-written forms: one prepared statement each, the declaration's SQL. */
function handWritten(db: D1Database): Record<string, ToolDefinition> {
  return {
    get_customer: defineTool({
      name: 'get_customer',
      title: 'Get customer',
      description: 'hand-written',
      input: z.object({ customerId: z.string() }),
      output: z.object({ customer: z.record(z.string(), z.unknown()) }),
      annotations: {},
      async run({ customerId }) {
        const customer = await db.prepare('SELECT id, name, company, email, phone, address, tier, created_at FROM customers WHERE id = ?1').bind(customerId).first<Record<string, unknown>>()
        if (!customer) throw notFound('customer', customerId)
        return { customer }
      },
    }),
    search_products: defineTool({
      name: 'search_products',
      title: 'Search products',
      description: 'hand-written',
      input: z.object({ query: z.string(), limit: z.number() }),
      output: z.object({ products: z.array(z.record(z.string(), z.unknown())) }),
      annotations: {},
      async run({ query, limit }) {
        const { results } = await db
          .prepare(
            `SELECT id, sku, name, description, category, price_cents, stock FROM products
             WHERE instr(lower(name), lower(?1)) > 0 OR instr(lower(sku), lower(?1)) > 0 OR instr(lower(description), lower(?1)) > 0 OR instr(lower(category), lower(?1)) > 0
             ORDER BY instr(lower(name), lower(?1)) > 0 DESC, name ASC, id ASC LIMIT ?2`,
          )
          .bind(query, limit)
          .all<Record<string, unknown>>()
        return { products: results }
      },
    }),
  }
}

const ARGS: Record<string, (i: number) => Record<string, unknown>> = {
  get_customer: (i) => ({ customerId: `cus_${String(1 + (i % 60)).padStart(3, '0')}` }),
  search_products: (i) => ({ query: ['pro', 'eco', 'switch', 'lamp', 'hw-00'][i % 5]!, limit: 10 }),
}

let counter = 0
let hand: Record<string, ToolDefinition> | undefined

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url)
    if (url.pathname !== '/__bench/declared') return new Response('not found', { status: 404 })
    const kind = url.searchParams.get('case') ?? 'noop'
    const n = Number(url.searchParams.get('n') ?? 1)
    const ctx: ToolContext = { principal, signal: new AbortController().signal, requestId: 'bench', data: createDataAccess(env.DB, async () => true, opts), now: () => new Date() }
    const [side, name] = kind.split('-') as [string, string]
    hand ??= handWritten(env.DB)
    for (let i = 0; i < n; i++) {
      const k = counter++
      if (side === 'declared' || side === 'hand') {
        const tool = side === 'declared' ? TOOLS.find((t) => t.name === name)! : hand[name]!
        await tool.run(TOOLS.find((t) => t.name === name)!.input.parse(ARGS[name]!(k)), ctx)
      } else if (side === 'query') {
        const result = await executeReadOnly(env.DB, QUERIES[k % QUERIES.length]!, name === 'scoped' ? { ...opts, rowFilter: FILTER } : opts)
        if (!result.ok) throw new Error(`bench query refused: ${JSON.stringify(result)}`)
      } else if (side !== 'noop') {
        return new Response(`unknown case ${kind}`, { status: 400 })
      }
    }
    return new Response('ok')
  },
} satisfies ExportedHandler<Env>
