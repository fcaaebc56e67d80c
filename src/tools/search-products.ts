// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { defineTool } from './define.ts'
import { Product } from './schemas.ts'

export const searchProducts = defineTool({
  name: 'search_products',
  title: 'Search products',
  description: 'Find products whose name, SKU, category or description contains the given text (case-insensitive).',
  input: z
    .object({
      query: z.string().trim().min(1).max(200).describe('text to look for, e.g. "keyboard" or "HA-0001"'),
      limit: z.number().int().min(1).max(50).default(10).describe('maximum number of products, 1..50 (default 10)'),
    })
    .strict(),
  output: z.object({ products: z.array(Product) }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run({ query, limit }, ctx) {
    return { products: await ctx.data.searchProducts(query, limit) }
  },
})
