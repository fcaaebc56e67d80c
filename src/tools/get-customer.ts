// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { defineTool, notFound } from './define.ts'
import { Customer, CustomerId } from './schemas.ts'

export const getCustomer = defineTool({
  name: 'get_customer',
  title: 'Get customer',
  description: 'Retrieve one customer record (name, company, contact details, tier) by its id.',
  input: z.object({ customerId: CustomerId }).strict(),
  output: z.object({ customer: Customer }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run({ customerId }, ctx) {
    const customer = await ctx.data.getCustomer(customerId)
    if (!customer) throw notFound('customer', customerId)
    return { customer }
  },
})
