// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import type { OrderCursor } from '../db/queries.ts'
import { defineTool, ToolError } from './define.ts'
import { CustomerId, Order, OrderStatus } from './schemas.ts'

const Cursor = z.object({ c: z.string().max(40), i: z.string().max(64) })

/** Opaque page token: base64url of the last row's sort key. Carries no authority. */
export function encodeCursor(cursor: OrderCursor): string {
  const json = JSON.stringify({ c: cursor.createdAt, i: cursor.id })
  return btoa(json).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

export function decodeCursor(token: string): OrderCursor {
  try {
    const json = atob(token.replace(/-/g, '+').replace(/_/g, '/'))
    const { c, i } = Cursor.parse(JSON.parse(json))
    return { createdAt: c, id: i }
  } catch {
    throw new ToolError('cursor is not valid: pass the nextCursor of a previous list_orders result', 'invalid_cursor')
  }
}

export const listOrders = defineTool({
  name: 'list_orders',
  title: 'List orders',
  description:
    'List orders, newest first, optionally for one customer and/or one status. Results are paginated: pass the returned nextCursor to get the next page.',
  input: z
    .object({
      customerId: CustomerId.optional().describe('only orders of this customer, e.g. "cus_001"'),
      status: OrderStatus.optional().describe('only orders in this status'),
      limit: z.number().int().min(1).max(100).default(20).describe('page size, 1..100 (default 20)'),
      cursor: z.string().min(1).max(200).optional().describe('nextCursor from the previous page'),
    })
    .strict(),
  output: z.object({ orders: z.array(Order), nextCursor: z.string().optional() }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run({ customerId, status, limit, cursor }, ctx) {
    const after = cursor === undefined ? undefined : decodeCursor(cursor)
    const page = await ctx.data.listOrders({ customerId, status, limit, after })
    return page.next ? { orders: page.orders, nextCursor: encodeCursor(page.next) } : { orders: page.orders }
  },
  resumeAfterCap(capped, output, { cursor }) {
    const kept = capped.orders.length
    if (kept === output.orders.length) return capped
    const last = output.orders[kept - 1]
    // nothing kept: resume where this page started ('~' sorts after every ISO timestamp)
    const next = last ? { createdAt: last.created_at, id: last.id } : cursor !== undefined ? decodeCursor(cursor) : { createdAt: '~', id: '' }
    return { orders: capped.orders, nextCursor: encodeCursor(next) }
  },
})
