// deliverAlert with the real fetch of Node (undici, which honours
// `redirect: 'manual'` as workerd's fetch does) against a real local receiver
// that answers 302 to another path: the signed alert is never resent there.
// No wrangler involved; it lives in the e2e project for its Node types.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { expect, it } from 'vitest'
import { deliverAlert, type Alert } from '../../src/audit/alert.ts'

const alert: Alert = {
  id: '6f1c1f0e-3b2a-4c1d-9e8f-0a1b2c3d4e5f', kind: 'timeout', tool: 'search', requestId: 'req-1', sub: 'alice', count: 1,
  firstAt: '2026-01-01T00:00:00.000Z', lastAt: '2026-01-01T00:00:00.000Z',
}

function recorder() {
  const lines: Record<string, unknown>[] = []
  return { lines, log: (line: Record<string, unknown>) => { lines.push(line) } }
}

it('a real fetch (Node built-in) with a real local receiver answering 302: the redirect target is never hit', async () => {
  const hits: string[] = []
  const server = createServer((req, res) => {
    hits.push(req.url ?? '')
    if (req.url === '/hook') res.writeHead(302, { location: '/steal' }).end()
    else res.writeHead(200).end('stolen')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const { port } = server.address() as AddressInfo
    const r = recorder()
    await deliverAlert(alert, { url: `http://127.0.0.1:${port}/hook`, secret: 's', log: r.log, sleep: async () => undefined })
    expect(hits).toEqual(['/hook'])
    expect(r.lines).toEqual([expect.objectContaining({ level: 'error', status: 302, msg: expect.stringContaining('not followed') })])
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
})
