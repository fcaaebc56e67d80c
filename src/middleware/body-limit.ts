// Reads the request body under a byte cap. A declared Content-Length over the
// cap is refused at once; otherwise the stream is counted as it arrives and
// reading stops at the first byte over the cap (413), so neither a lying
// Content-Length nor a chunked body can make the Worker buffer more than the
// cap. The text is kept for the JSON-RPC parser: the body is read once.
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../env.ts'
import { AppError } from '../errors.ts'

export async function readCapped(body: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<string | undefined> {
  if (!body) return ''
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > maxBytes) {
      await reader.cancel().catch(() => {})
      return undefined
    }
    chunks.push(value)
  }
  const all = new Uint8Array(total)
  let offset = 0
  for (const chunk of chunks) {
    all.set(chunk, offset)
    offset += chunk.byteLength
  }
  return new TextDecoder().decode(all)
}

export const bodyLimit = () =>
  createMiddleware<AppEnv>(async function bodyLimit(c, next) {
    const max = c.var.config.maxBodyBytes
    const tooLarge = () => new AppError('payload_too_large', { message: `request body exceeds ${max} bytes` })
    const declared = c.req.header('content-length')
    if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > max) throw tooLarge()
    const text = await readCapped(c.req.raw.body, max)
    if (text === undefined) throw tooLarge()
    c.set('body', text)
    await next()
  })
