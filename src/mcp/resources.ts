// The resources one caller sees, registered per request next to its tools:
//
//   bastion://schema         application/json   the tables execute_query may
//                            read, their columns (from D1), the caller's row
//                            scope on them and the query limits; only for a
//                            token that may call execute_query
//   bastion://tools/<name>   text/markdown      usage notes of one tool, for
//                            each tool the caller's scopes allow (the same
//                            filter as the tool registration in server.ts)
//
// A resource the caller may not see is never registered, so reading it is the
// SDK's own "Resource not found" (-32602), word for word what a URI that
// exists for nobody gets. Cache hints (2026-07-28): the schema depends on the
// token (row scope) → private, 60 s; a tool's notes depend only on the
// policy → public, 5 min. Every resource and every read carries the policy
// version in `_meta`: a cached read is stale once it changes.
import type { CacheHint, McpServer, ReadResourceResult } from '@modelcontextprotocol/server'
import * as z from 'zod'
import type { ConfirmRule } from '../policy/confirm.ts'
import { POLICY, type ToolSettings } from '../policy/policy.ts'
import { POLICY_VERSION_META_KEY } from '../policy/policy-version.ts'
import type { ToolDefinition } from '../tools/define.ts'
import { TOOLS } from '../tools/index.ts'
import type { RequestScope } from './scope.ts'

const SCHEMA_URI = 'bastion://schema'
const toolNotesUri = (name: string) => `bastion://tools/${name}`

const SCHEMA_CACHE_HINT: CacheHint = { cacheScope: 'private', ttlMs: 60_000 }
const TOOL_NOTES_CACHE_HINT: CacheHint = { cacheScope: 'public', ttlMs: 300_000 }

/** The tool whose callers see the schema: whoever may call execute_query. */
const QUERY_TOOL = 'execute_query'

/** Registers the resources `scope`'s caller may see on `server`; `policyVersion` goes into every `_meta`. */
export function registerResources(server: McpServer, scope: RequestScope, policyVersion: string): void {
  const _meta = { [POLICY_VERSION_META_KEY]: policyVersion }
  const scopes = scope.principal.scopes

  const query = POLICY.tools.get(QUERY_TOOL)
  if (query && scopes.has(query.scope)) {
    server.registerResource(
      'schema',
      SCHEMA_URI,
      {
        title: 'Queryable schema',
        description: `The tables ${QUERY_TOOL} may read, their columns, your row scope on them and the query limits.`,
        mimeType: 'application/json',
        cacheHint: SCHEMA_CACHE_HINT,
        _meta,
      },
      async (uri): Promise<ReadResourceResult> => {
        let document: SchemaDocument
        try {
          document = await schemaDocument(scope)
        } catch (error) {
          // the SDK would send the message on: the detail goes to the log, the client gets the request id
          scope.log('error', 'schema_read_failed', { error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) })
          throw new Error(`internal error (request ${scope.requestId})`)
        }
        return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(document, null, 2) }], _meta }
      },
    )
  }

  for (const tool of TOOLS) {
    const settings = POLICY.tools.get(tool.name)
    if (!settings || !scopes.has(settings.scope)) continue
    server.registerResource(
      `tool:${tool.name}`,
      toolNotesUri(tool.name),
      {
        title: `${tool.title}: usage notes`,
        description: `How to call ${tool.name}: arguments, scope, limits.`,
        mimeType: 'text/markdown',
        cacheHint: TOOL_NOTES_CACHE_HINT,
        _meta,
      },
      (uri): ReadResourceResult => ({
        contents: [{ uri: uri.href, mimeType: 'text/markdown', text: toolNotes(tool, settings) }],
        _meta,
      }),
    )
  }
}

// ---- bastion://schema ----------------------------------------------------

interface Column {
  name: string
  type: string
  notNull: boolean
  primaryKey: boolean
}

interface SchemaDocument {
  tables: { name: string; columns: Column[]; rowScope?: { column: string; claim: string; note: string } }[]
  limits: { maxQueryRows: number; maxQueryBytes: number; maxQueryVisitedRows: number }
  notQueryable: string
}

interface PragmaColumn {
  name: string
  type: string
  notnull: number
  pk: number
}

// The queryable tables' columns, read from D1 on the first schema read of
// the isolate and kept: the schema changes only with a migration, that is a
// deploy, which starts new isolates. A failed read is not kept.
let columns: Promise<ReadonlyMap<string, Column[]>> | undefined

async function readColumns(db: D1Database): Promise<ReadonlyMap<string, Column[]>> {
  const statement = db.prepare('SELECT name, type, "notnull", pk FROM pragma_table_info(?1) ORDER BY cid')
  const results = await db.batch<PragmaColumn>(POLICY.queryableTables.map((table) => statement.bind(table)))
  return new Map(
    POLICY.queryableTables.map((table, i) => [
      table,
      results[i]!.results.map((c) => ({ name: c.name, type: c.type, notNull: c.notnull !== 0, primaryKey: c.pk > 0 })),
    ]),
  )
}

function tableColumns(db: D1Database): Promise<ReadonlyMap<string, Column[]>> {
  columns ??= readColumns(db).catch((error: unknown) => {
    columns = undefined
    throw error
  })
  return columns
}

/** The schema document for one caller: the columns are shared, the row scope is the caller's own (never its claim's value). */
async function schemaDocument(scope: Pick<RequestScope, 'db' | 'rows'>): Promise<SchemaDocument> {
  const byTable = await tableColumns(scope.db)
  return {
    tables: POLICY.queryableTables.map((name) => {
      const filter = scope.rows.get(name)
      return {
        name,
        columns: byTable.get(name) ?? [],
        ...(filter && {
          rowScope: {
            column: filter.column,
            claim: filter.claim,
            note:
              filter.value === undefined
                ? `your token has no usable ${filter.claim} claim: a query reading ${name} is refused`
                : `you see only the rows of ${name} whose ${filter.column} equals your token's ${filter.claim} claim`,
          },
        }),
      }
    }),
    limits: { maxQueryRows: POLICY.maxQueryRows, maxQueryBytes: POLICY.maxQueryBytes, maxQueryVisitedRows: POLICY.maxQueryVisitedRows },
    notQueryable: 'every other table: the audit tables (audit_*), SQLite and D1 internals (sqlite_*, d1_*, _cf_*) and the full-text index (search_index and its shadow tables)',
  }
}

// ---- bastion://tools/<name> ------------------------------------------------

interface JsonSchemaObject {
  properties?: Record<string, { type?: unknown; description?: string; anyOf?: { type?: unknown }[]; enum?: unknown[]; default?: unknown }>
  required?: string[]
}

function typeOf(property: NonNullable<JsonSchemaObject['properties']>[string]): string {
  if (property.enum) return property.enum.map((v) => JSON.stringify(v)).join(' | ')
  if (property.type !== undefined) return Array.isArray(property.type) ? property.type.join(' | ') : String(property.type)
  if (property.anyOf) return property.anyOf.map((p) => String(p.type ?? 'any')).join(' | ')
  return 'any'
}

function confirmNote(rule: ConfirmRule): string {
  if (rule === true) return 'for every call'
  const when = Object.entries(rule.when).map(([argument, values]) => `\`${argument}\` is ${values.map((v) => JSON.stringify(v)).join(' or ')}`)
  return `when ${when.join(' and ')},`
}

// The notes depend only on the policy and the tool list: built once per tool and isolate.
const notes = new Map<string, string>()

/** The markdown usage notes of one tool. */
function toolNotes(tool: ToolDefinition, settings: ToolSettings): string {
  const cached = notes.get(tool.name)
  if (cached !== undefined) return cached
  // the input side: what the caller sends (a field with a default is optional)
  const schema = z.toJSONSchema(tool.input, { io: 'input' }) as JsonSchemaObject
  const required = new Set(schema.required ?? [])
  const args = Object.entries(schema.properties ?? {}).map(
    ([name, p]) =>
      `- \`${name}\` (${typeOf(p)}, ${required.has(name) ? 'required' : p.default !== undefined ? `optional, default ${JSON.stringify(p.default)}` : 'optional'})` +
      (p.description ? `: ${p.description}` : ''),
  )
  const writes = tool.annotations.readOnlyHint === false
  const { limit, windowSeconds } = settings.rateLimit
  const text = [
    `# ${tool.title} (\`${tool.name}\`)`,
    '',
    tool.description,
    '',
    `**Scope:** \`${settings.scope}\``,
    '',
    '## Arguments',
    '',
    ...(args.length > 0 ? args : ['none']),
    '',
    '## Limits',
    '',
    `- timeout: ${settings.timeoutMs} ms`,
    `- output: at most ~${settings.outputTokens} tokens; a longer result is cut and says so`,
    `- rate: ${limit} calls per ${windowSeconds} s per caller`,
    ...(settings.concurrency !== undefined ? [`- concurrency: at most ${settings.concurrency} call(s) of this tool at once per caller`] : []),
    '',
    '## Effects',
    '',
    writes
      ? `- writes: yes${tool.annotations.destructiveHint ? ' (destructive: it changes or removes existing data)' : ' (adds data, changes nothing that exists)'}; the change and its audit row commit together`
      : '- writes: no (read-only)',
    ...(settings.confirm === undefined ? [] : [`- confirmation: ${confirmNote(settings.confirm)} the user is asked first (an elicitation; README "Confirmation"), and nothing changes unless they confirm. A client that cannot elicit is refused.`]),
    '- row scope: when the deployment sets ROW_SCOPE, every business table this tool reads holds for you only the rows your token\'s claim allows; a token without that claim is refused (exempt roles see every row)',
    '',
  ].join('\n')
  notes.set(tool.name, text)
  return text
}
