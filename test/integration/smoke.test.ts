import { env } from 'cloudflare:workers'
import { expect, it } from 'vitest'
it('has demo data', async () => {
  const r = await env.DB.prepare('SELECT count(*) AS n FROM orders').first<{ n: number }>()
  expect(r?.n).toBe(300)
  const s = await env.DB.prepare("SELECT ref_id FROM search_index WHERE search_index MATCH 'hardware' LIMIT 1").first()
  expect(s).toBeTruthy()
})
