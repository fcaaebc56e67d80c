// Zod schemas shared by the tools: ids, enums and the entities they return.
// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { ORDER_STATUSES } from '../db/order-status.ts'

const id = (prefix: string, example: string) =>
  z
    .string()
    .min(1)
    .max(64)
    .regex(new RegExp(`^${prefix}_[A-Za-z0-9]+$`), `must look like "${example}"`)

export const CustomerId = id('cus', 'cus_001').describe('customer id, e.g. "cus_001"')
export const OrderId = id('ord', 'ord_0001').describe('order id, e.g. "ord_0001"')
export const OrderStatus = z.enum(ORDER_STATUSES)

export const Customer = z.object({
  id: z.string(),
  name: z.string(),
  company: z.string(),
  email: z.string(),
  phone: z.string(),
  address: z.string(),
  tier: z.string(),
  created_at: z.string(),
})

export const Order = z.object({
  id: z.string(),
  customer_id: z.string(),
  product_id: z.string(),
  quantity: z.number().int(),
  total_cents: z.number().int(),
  status: OrderStatus,
  note: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
})

export const Product = z.object({
  id: z.string(),
  sku: z.string(),
  name: z.string(),
  description: z.string(),
  category: z.string(),
  price_cents: z.number().int(),
  stock: z.number().int(),
})

export const Ticket = z.object({
  id: z.string(),
  customer_id: z.string(),
  subject: z.string(),
  body: z.string(),
  priority: z.enum(['low', 'normal', 'high', 'urgent']),
  status: z.enum(['open', 'closed']),
  created_by: z.string(),
  created_at: z.string(),
})
