import { describe, expect, it } from 'vitest'
import { connectClient, rpc, callWorker, MCP_URL } from '../support/worker.ts'

describe('smoke', () => {
  it('lists tools for admin (modern)', async () => {
    const client = await connectClient({ role: 'admin' })
    const { tools } = await client.listTools()
    // hand-written tools first, then the declared ones (tools.config.ts)
    expect(tools.map((t) => t.name)).toEqual(['list_orders', 'update_order', 'create_ticket', 'search', 'execute_query', 'get_customer', 'search_products'])
    const r = await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_001' } })
    expect(r.isError).toBeFalsy()
    await client.close()
  })
  it('lists tools for admin (legacy)', async () => {
    const client = await connectClient({ role: 'admin' }, 'legacy')
    const { tools } = await client.listTools()
    expect(tools.length).toBe(7)
    const r = await client.callTool({ name: 'get_customer', arguments: { customerId: 'cus_999' } })
    expect(r).toMatchObject({ isError: true })
    await client.close()
  })
  it('401 without token', async () => {
    const res = await rpc('tools/list', {})
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('resource_metadata=')
  })
})
