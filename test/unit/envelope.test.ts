import { describe, expect, it } from 'vitest'
import { parseEnvelope } from '../../src/mcp/envelope.ts'
import { decodeNameHeader } from '../../src/middleware/rpc.ts'

describe('parseEnvelope', () => {
  it('extracts method, tool name and arguments of a tools/call', () => {
    const r = parseEnvelope(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'get_customer', arguments: { customerId: 'cus_001' } } }))
    expect(r).toMatchObject({ ok: true, message: { kind: 'request', id: 3, method: 'tools/call', toolName: 'get_customer', toolArguments: { customerId: 'cus_001' } } })
  })

  it('reads client identity from initialize and from the 2026 _meta key', () => {
    const init = parseEnvelope(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { clientInfo: { name: 'claude', version: '1.2' } } }))
    expect(init.ok && init.message.client).toEqual({ name: 'claude', version: '1.2' })
    const modern = parseEnvelope(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/clientInfo': { name: 'agent', version: '2' } } } }))
    expect(modern.ok && modern.message.client).toEqual({ name: 'agent', version: '2' })
  })

  it('classifies notifications and responses', () => {
    expect(parseEnvelope('{"jsonrpc":"2.0","method":"notifications/initialized"}')).toMatchObject({ ok: true, message: { kind: 'notification' } })
    expect(parseEnvelope('{"jsonrpc":"2.0","id":1,"result":{}}')).toMatchObject({ ok: true, message: { kind: 'response' } })
  })

  it('does not take a non-string tool name as a tool name', () => {
    const r = parseEnvelope(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: ['search'] } }))
    expect(r.ok && r.message.toolName).toBeUndefined()
  })

  it.each([
    ['{', 'parse_error'],
    ['', 'parse_error'],
    ['null', 'invalid_request'],
    ['[]', 'invalid_request'],
    ['[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 'invalid_request'],
    ['{"id":1,"method":"ping"}', 'invalid_request'],
    ['{"jsonrpc":"2.0","id":{},"method":"ping"}', 'invalid_request'],
    ['{"jsonrpc":"2.0","id":null,"method":"ping"}', 'invalid_request'],
    ['{"jsonrpc":"2.0","id":1,"method":42}', 'invalid_request'],
    ['{"jsonrpc":"2.0","id":1,"method":""}', 'invalid_request'],
    ['{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}', 'invalid_request'],
    ['{"jsonrpc":"2.0","id":1}', 'invalid_request'],
  ])('refuses %s as %s', (text, kind) => {
    expect(parseEnvelope(text)).toMatchObject({ ok: false, kind })
  })

  it('keeps the request id on refusals when it can read one', () => {
    expect(parseEnvelope('{"jsonrpc":"1.0","id":"abc","method":"ping"}')).toMatchObject({ ok: false, id: 'abc' })
  })
})

describe('decodeNameHeader (Mcp-Name, SEP-2243)', () => {
  it('passes a plain value through', () => {
    expect(decodeNameHeader('get_customer')).toBe('get_customer')
  })
  it('decodes the base64 sentinel form as UTF-8', () => {
    const utf8 = String.fromCharCode(...new TextEncoder().encode('résumé'))
    expect(decodeNameHeader(`=?base64?${btoa(utf8)}?=`)).toBe('résumé')
  })
  it('rejects a sentinel that is not valid base64 UTF-8', () => {
    expect(decodeNameHeader('=?base64?/w==?=')).toBeUndefined()
  })
})
