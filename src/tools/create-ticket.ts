// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import type { Ticket as TicketRow } from '../db/queries.ts'
import { defineTool, notFound } from './define.ts'
import { CustomerId, Ticket } from './schemas.ts'

function ticketId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8))
  return 'tkt_' + [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')
}

export const createTicket = defineTool({
  name: 'create_ticket',
  title: 'Create support ticket',
  description: 'Open a support ticket for a customer. Returns the created ticket.',
  input: z
    .object({
      customerId: CustomerId,
      subject: z.string().trim().min(1).max(200).describe('one-line summary, 1..200 characters'),
      body: z.string().trim().min(1).max(5000).describe('the full description, 1..5000 characters'),
      priority: z.enum(['low', 'normal', 'high', 'urgent']).default('normal').describe('urgency (default "normal")'),
    })
    .strict(),
  output: z.object({ ticket: Ticket }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  async run({ customerId, subject, body, priority }, ctx) {
    if (!(await ctx.data.customerExists(customerId))) throw notFound('customer', customerId)
    const ticket: TicketRow = {
      id: ticketId(),
      customer_id: customerId,
      subject,
      body,
      priority,
      status: 'open',
      created_by: ctx.principal.sub,
      created_at: ctx.now().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    }
    const output = { ticket }
    await ctx.data.createTicket(ticket, output)
    return output
  },
})
