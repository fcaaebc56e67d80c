// Resources through the whole Worker (src/mcp/resources.ts): which ones a
// token sees, what they say, and their cache hints and policy version.
//   bastion://schema        only for a token that may call execute_query
//   bastion://tools/<name>  one per tool the token's scopes allow
// A resource the token may not see answers exactly like one that does not
// exist. Expected columns are read from D1 directly.
import { env } from 'cloudflare:workers'
import { beforeAll, describe, expect, it } from 'vitest'
import { POLICY, POLICY_INPUT } from '../../src/policy/policy.ts'
import { computePolicyVersion, POLICY_VERSION_META_KEY } from '../../src/policy/policy-version.ts'
import { TOOLS } from '../../src/tools/index.ts'
import { mintToken } from '../support/tokens.ts'
import { testEnv } from '../support/test-env.ts'
import { connectClient, rpcWith } from '../support/worker.ts'

const DB = testEnv(env).DB
const ROW_SCOPED = { ROW_SCOPE: 'orders.customer_id=claim.customer', ROW_SCOPE_EXEMPT_ROLES: 'admin' }

interface Listed {
  uri: string
  name: string
  mimeType?: string
  _meta?: Record<string, unknown>
}
interface Read {
  contents: { uri: string; mimeType?: string; text: string }[]
  _meta?: Record<string, unknown>
}
interface Schema {
  tables: { name: string; columns: { name: string; type: string; notNull: boolean; primaryKey: boolean }[]; rowScope?: { column: string; claim: string; note: string } }[]
  limits: { maxQueryRows: number; maxQueryBytes: number }
  notQueryable: string
}

async function call(token: string, method: string, params: Record<string, unknown> = {}, settings: Record<string, string> = {}) {
  const res = await rpcWith(settings, token, method, params)
  expect(res.status).toBe(200)
  return (await res.json()) as { result?: Record<string, unknown>; error?: { code: number; message: string; data?: unknown } }
}
const list = async (token: string, settings?: Record<string, string>) => (await call(token, 'resources/list', {}, settings)).result!['resources'] as Listed[]
const read = async (token: string, uri: string, settings?: Record<string, string>) => {
  const body = await call(token, 'resources/read', { uri }, settings)
  expect(body.error, JSON.stringify(body.error)).toBeUndefined()
  return body.result as unknown as Read
}
const readSchema = async (token: string, settings?: Record<string, string>) => JSON.parse((await read(token, 'bastion://schema', settings)).contents[0]!.text) as Schema

const toolsOf = (scopes: ReadonlySet<string>) => TOOLS.filter((t) => scopes.has(POLICY.tools.get(t.name)!.scope)).map((t) => `bastion://tools/${t.name}`)

let readOnly: string
let admin: string

beforeAll(async () => {
  readOnly = await mintToken({ role: 'read-only' })
  admin = await mintToken({ role: 'admin' })
})

describe('resources/list shows exactly what the token may use', () => {
  it('a read-only token lists the notes of its own tools and no schema', async () => {
    const uris = (await list(readOnly)).map((r) => r.uri)
    expect(uris).toEqual(toolsOf(POLICY.roles.get('read-only')!))
    expect(uris).not.toContain('bastion://schema')
    expect(uris).not.toContain('bastion://tools/execute_query')
  })

  it('an admin token lists the schema and the notes of every tool', async () => {
    const resources = await list(admin)
    expect(resources.map((r) => r.uri)).toEqual(['bastion://schema', ...TOOLS.map((t) => `bastion://tools/${t.name}`)])
    expect(resources.find((r) => r.uri === 'bastion://schema')?.mimeType).toBe('application/json')
    expect(resources.filter((r) => r.uri.startsWith('bastion://tools/')).every((r) => r.mimeType === 'text/markdown')).toBe(true)
  })

  it('a token with no scope of the policy lists no resource', async () => {
    expect(await list(await mintToken({ scope: 'unrelated:scope' }))).toEqual([])
  })
})

describe('bastion://schema', () => {
  it('lists every queryable table with its columns as D1 has them (customers has email)', async () => {
    const schema = await readSchema(admin)
    expect(schema.tables.map((t) => t.name)).toEqual([...POLICY.queryableTables])
    for (const table of schema.tables) {
      const expected = (await DB.prepare(`PRAGMA table_info("${table.name}")`).all<{ name: string; type: string; notnull: number; pk: number }>()).results
      expect(table.columns).toEqual(expected.map((c) => ({ name: c.name, type: c.type, notNull: c.notnull === 1, primaryKey: c.pk > 0 })))
    }
    expect(schema.tables.find((t) => t.name === 'customers')!.columns.map((c) => c.name)).toContain('email')
    expect(schema.tables.find((t) => t.name === 'customers')!.columns.find((c) => c.name === 'id')).toMatchObject({ primaryKey: true })
  })

  it('states the query limits and that protected tables are not queryable', async () => {
    const schema = await readSchema(admin)
    expect(schema.limits).toMatchObject({ maxQueryRows: POLICY.maxQueryRows, maxQueryBytes: POLICY.maxQueryBytes })
    expect(schema.notQueryable).toMatch(/audit_\*/)
    expect(schema.notQueryable).toMatch(/sqlite_\*/)
    expect(schema.notQueryable).toMatch(/search_index/)
    expect(schema.tables.some((t) => /^(audit_|sqlite_|search_index)/.test(t.name))).toBe(false)
  })

  it("shows a row-scoped caller the rule on orders, never its claim's value", async () => {
    const token = await mintToken({ sub: 'agent-scoped', scope: 'sql:read', claims: { customer: 'cus_secret_007' } })
    const read = await call(token, 'resources/read', { uri: 'bastion://schema' }, ROW_SCOPED)
    const text = (read.result as unknown as Read).contents[0]!.text
    expect(text).not.toContain('cus_secret_007')
    const schema = JSON.parse(text) as Schema
    expect(schema.tables.find((t) => t.name === 'orders')!.rowScope).toMatchObject({ column: 'customer_id', claim: 'customer' })
    expect(schema.tables.find((t) => t.name === 'orders')!.rowScope!.note).toMatch(/only the rows of orders whose customer_id equals your token's customer claim/)
    expect(schema.tables.find((t) => t.name === 'customers')!.rowScope).toBeUndefined()
  })

  it('tells a row-scoped caller without the claim that queries of the scoped table are refused', async () => {
    const token = await mintToken({ sub: 'agent-no-claim', scope: 'sql:read' })
    const schema = await readSchema(token, ROW_SCOPED)
    expect(schema.tables.find((t) => t.name === 'orders')!.rowScope!.note).toMatch(/no usable customer claim/)
  })

  it('shows an exempt role no row scope', async () => {
    const schema = await readSchema(admin, ROW_SCOPED)
    expect(schema.tables.every((t) => t.rowScope === undefined)).toBe(true)
  })
})

describe('bastion://tools/<name>', () => {
  it('execute_query notes: scope, arguments, limits, concurrency, read-only, row scope', async () => {
    const { contents } = await read(admin, 'bastion://tools/execute_query')
    expect(contents[0]!.mimeType).toBe('text/markdown')
    const text = contents[0]!.text
    const settings = POLICY.tools.get('execute_query')!
    expect(text).toContain('# Run a read-only SQL query (`execute_query`)')
    expect(text).toContain('**Scope:** `sql:read`')
    expect(text).toMatch(/- `query` \(string, required\): a single SQLite SELECT/)
    expect(text).toContain(`- timeout: ${settings.timeoutMs} ms`)
    expect(text).toContain(`~${settings.outputTokens} tokens`)
    expect(text).toContain(`- rate: ${settings.rateLimit.limit} calls per ${settings.rateLimit.windowSeconds} s`)
    expect(text).toContain('- concurrency: at most 1 call(s)')
    expect(text).toContain('- writes: no (read-only)')
    expect(text).toMatch(/- row scope: /)
  })

  it('update_order notes say it writes and that cancelling asks the user; optional arguments are marked optional', async () => {
    const text = (await read(admin, 'bastion://tools/update_order')).contents[0]!.text
    expect(text).toMatch(/- writes: yes/)
    expect(text).toContain('- confirmation: when `status` is "cancelled", the user is asked first')
    expect((await read(admin, 'bastion://tools/create_ticket')).contents[0]!.text).not.toContain('confirmation')
    const listOrders = (await read(readOnly, 'bastion://tools/list_orders')).contents[0]!.text
    expect(listOrders).toMatch(/- `limit` \(integer, optional, default 20\)/)
    expect(listOrders).not.toContain('concurrency')
  })

  it('the notes do not depend on the token that reads them', async () => {
    const a = (await read(readOnly, 'bastion://tools/get_customer')).contents[0]!.text
    const b = (await read(admin, 'bastion://tools/get_customer')).contents[0]!.text
    expect(a).toBe(b)
  })
})

describe('a hidden resource is indistinguishable from a missing one', () => {
  const errorFor = async (token: string, uri: string) => {
    const body = await call(token, 'resources/read', { uri })
    expect(body.result).toBeUndefined()
    return JSON.parse(JSON.stringify(body.error).replaceAll(uri, '<uri>')) as unknown
  }

  it('a read-only token reading bastion://tools/execute_query gets the same error as for bastion://tools/nope', async () => {
    const hidden = await errorFor(readOnly, 'bastion://tools/execute_query')
    expect(hidden).toMatchObject({ code: -32602 })
    expect(hidden).toEqual(await errorFor(readOnly, 'bastion://tools/nope'))
  })

  it('a token without sql:read cannot read the schema resource', async () => {
    const hidden = await errorFor(readOnly, 'bastion://schema')
    expect(hidden).toMatchObject({ code: -32602 })
    expect(hidden).toEqual(await errorFor(readOnly, 'bastion://nope'))
    expect(hidden).toEqual(await errorFor(admin, 'bastion://nope'))
  })
})

describe('policy version and cache hints', () => {
  it('every listed resource and every read carries the same policy version, stable across calls', async () => {
    const version = await computePolicyVersion(POLICY_INPUT)
    expect(version).toMatch(/^[0-9a-f]{16}$/)
    for (const resource of [...(await list(admin)), ...(await list(readOnly))]) expect(resource._meta?.[POLICY_VERSION_META_KEY]).toBe(version)
    expect((await read(admin, 'bastion://schema'))._meta?.[POLICY_VERSION_META_KEY]).toBe(version)
    expect((await read(admin, 'bastion://tools/search'))._meta?.[POLICY_VERSION_META_KEY]).toBe(version)
    expect((await read(readOnly, 'bastion://tools/search_products'))._meta?.[POLICY_VERSION_META_KEY]).toBe(version)
  })

  it('2026-07-28: tool notes are public for 5 min, the schema and the list private', async () => {
    const client = await connectClient({ role: 'admin' })
    try {
      const listed = (await client.listResources()) as unknown as Record<string, unknown>
      expect(listed).toMatchObject({ cacheScope: 'private', ttlMs: 0 })
      const notes = (await client.readResource({ uri: 'bastion://tools/list_orders' })) as unknown as Record<string, unknown>
      expect(notes).toMatchObject({ cacheScope: 'public', ttlMs: 300_000 })
      const schema = (await client.readResource({ uri: 'bastion://schema' })) as unknown as Record<string, unknown>
      expect(schema).toMatchObject({ cacheScope: 'private', ttlMs: 60_000 })
    } finally {
      await client.close()
    }
  })
})
