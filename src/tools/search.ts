// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { ftsQuery } from '../db/queries.ts'
import { defineTool, ToolError } from './define.ts'

export const search = defineTool({
  name: 'search',
  title: 'Search everything',
  description:
    'Full-text search across customers (name, company), orders (id, status, note) and products (name, SKU, category, description), best matches first. Words are matched as prefixes; all words must match.',
  input: z
    .object({
      query: z.string().trim().min(1).max(200).describe('words to look for, e.g. "wireless keyboard"'),
      limit: z.number().int().min(1).max(50).default(10).describe('maximum number of results, 1..50 (default 10)'),
    })
    .strict(),
  output: z.object({
    results: z.array(
      z.object({
        kind: z.enum(['customer', 'order', 'product']),
        id: z.string(),
        title: z.string(),
        snippet: z.string(),
        score: z.number(),
      }),
    ),
  }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run({ query, limit }, ctx) {
    const match = ftsQuery(query)
    if (!match) throw new ToolError('query has no searchable words (letters or digits)', 'invalid_query')
    return { results: await ctx.data.search(match, limit) }
  },
})
