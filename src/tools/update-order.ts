// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { canTransition, ORDER_TRANSITIONS, type OrderStatus as Status } from '../db/order-status.ts'
import type { Order as OrderRow } from '../db/queries.ts'
import { defineTool, notFound, ToolError } from './define.ts'
import { Order, OrderId, OrderStatus } from './schemas.ts'

const MAX_ATTEMPTS = 3

/** The order, if it exists and may move to `status`; else the ToolError the call answers with. */
function checkMove(order: OrderRow | null, orderId: string, status: Status): OrderRow {
  if (!order) throw notFound('order', orderId)
  if (order.status === status) throw new ToolError(`order ${orderId} is already ${status}`, 'no_change')
  if (!canTransition(order.status, status)) {
    const allowed = ORDER_TRANSITIONS[order.status]
    throw new ToolError(
      `order ${orderId} cannot go from ${order.status} to ${status}` + (allowed.length ? ` (allowed: ${allowed.join(', ')})` : ` (${order.status} is final)`),
      'invalid_transition',
    )
  }
  return order
}

/** The question a confirmed move asks: the order as it is and what the move does to it. */
function describeMove(order: OrderRow, status: Status, note: string | undefined): string {
  const final = ORDER_TRANSITIONS[status].length === 0 ? ` ${status} is final: this cannot be undone.` : ''
  const noted = note === undefined ? '' : ` The note becomes: "${note}".`
  return (
    `Change order ${order.id} (customer ${order.customer_id}, ${order.quantity} × product ${order.product_id}, total ${(order.total_cents / 100).toFixed(2)}) ` +
    `from ${order.status} to ${status}?${final}${noted}`
  )
}

export const updateOrder = defineTool({
  name: 'update_order',
  title: 'Update order status',
  description:
    'Move an order to a new status, optionally leaving a note. Allowed moves: pending→paid|cancelled, paid→shipped|cancelled, shipped→delivered; delivered and cancelled are final. Returns the updated order.',
  input: z
    .object({
      orderId: OrderId,
      status: OrderStatus.describe('the new status'),
      note: z.string().max(500).optional().describe('a note to store on the order, at most 500 characters'),
    })
    .strict(),
  output: z.object({ order: Order, previousStatus: OrderStatus }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async confirmation({ orderId, status, note }, ctx) {
    return describeMove(checkMove(await ctx.data.getOrder(orderId), orderId, status), status, note)
  },
  async run({ orderId, status, note }, ctx) {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const order = checkMove(await ctx.data.getOrder(orderId), orderId, status)
      // confirmed: the write is the one the user saw, or none (another writer may have moved the order)
      if (ctx.confirmed !== undefined && describeMove(order, status, note) !== ctx.confirmed) {
        throw new ToolError(`order ${orderId} changed after the user confirmed (it is ${order.status} now); nothing was changed: call update_order again to ask again`, 'confirmation_stale')
      }
      const at = ctx.now().toISOString().replace(/\.\d{3}Z$/, 'Z')
      const updated = { ...order, status, note: note ?? order.note, updated_at: at }
      const output = { order: updated, previousStatus: order.status }
      if (await ctx.data.updateOrderStatus({ id: orderId, from: order.status, to: status, note: note ?? null, at }, output)) return output
      // Another writer changed the order between our read and write: re-read and re-check.
    }
    throw new ToolError(`order ${orderId} is being changed concurrently; try again`, 'conflict')
  },
})
