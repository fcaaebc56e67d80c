// The tool list, as a table of contents. The policy (policy/policy.ts) says
// who may call each one; this list says what exists.
import { createTicket } from './create-ticket.ts'
import { executeQuery } from './execute-query.ts'
import type { ToolDefinition } from './define.ts'
import { getCustomer } from './get-customer.ts'
import { listOrders } from './list-orders.ts'
import { search } from './search.ts'
import { searchProducts } from './search-products.ts'
import { updateOrder } from './update-order.ts'

export const TOOLS: readonly ToolDefinition[] = [
  getCustomer,
  listOrders,
  searchProducts,
  updateOrder,
  createTicket,
  search,
  executeQuery,
]
