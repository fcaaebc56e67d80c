// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { defineTool, ToolError } from './define.ts'

export const executeQuery = defineTool({
  name: 'execute_query',
  title: 'Run a read-only SQL query',
  description:
    'Run ONE read-only SQLite SELECT (WITH and UNION allowed) over the business tables customers, orders, products and tickets. ' +
    'Writes, PRAGMA, ATTACH, other tables and unsafe functions are refused with the reason. At most 500 rows and 64 columns come back; values over 4 KiB are cut; the result says when anything was truncated.',
  input: z
    .object({
      query: z.string().min(1).max(1000).describe('a single SQLite SELECT statement, at most 1000 characters, e.g. "SELECT status, count(*) AS n FROM orders GROUP BY status"'),
    })
    .strict(),
  output: z.object({
    columns: z.array(z.string()),
    rows: z.array(z.record(z.string(), z.unknown())),
    rowCount: z.number().int(),
    truncated: z.union([z.literal(false), z.literal('rows'), z.literal('bytes')]),
    valuesTruncated: z.number().int().describe('how many values were cut to 4 KiB (texts end with "…")'),
  }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run({ query }, ctx) {
    const result = await ctx.data.readOnlyQuery(query)
    if (result.ok) {
      const { columns, rows, rowCount, truncated, valuesTruncated } = result
      return { columns, rows, rowCount, truncated, valuesTruncated }
    }
    if (result.kind === 'refused') throw new ToolError(`query refused: ${result.message}`, `sql_${result.code}`)
    // Defence in depth: the guard let through something that wrote. Never
    // return its rows; the audit layer records the incident and alerts.
    throw new ToolError('query refused: it attempted to modify the database; this incident has been recorded', 'sql_write_incident', 'error')
  },
})
