// The tool list, as a table of contents: the hand-written tools, then the
// declared ones (tools.config.ts). The policy (policy/policy.ts) says who may
// call each one; this list says what exists.
import DECLARED_TOOLS from '../../tools.config.ts'
import { createTicket } from './create-ticket.ts'
import { declaredTool } from './declared.ts'
import { executeQuery } from './execute-query.ts'
import type { ToolDefinition } from './define.ts'
import { listOrders } from './list-orders.ts'
import { search } from './search.ts'
import { updateOrder } from './update-order.ts'

export const TOOLS: readonly ToolDefinition[] = [
  listOrders,
  updateOrder,
  createTicket,
  search,
  executeQuery,
  ...Object.entries(DECLARED_TOOLS).map(([name, tool]) => declaredTool(name, tool)),
]
