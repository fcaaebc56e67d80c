// Declared SQL tools: a tool written as data (tools.config.ts) instead of
// code: one SQL statement with named parameters, its inputs, its scope and
// limits. A declaration is checked in two steps:
//   - `checkDeclarations` (cheap, no SQL parser): names, types, ranges,
//     scopes, limits, and that the statement's `:name` parameters are exactly
//     the declared ones. Run when the Worker loads (tools/index.ts): a
//     mistake stops it from starting, with a message naming the tool and field;
//   - `checkDeclaredSql` (the SQL guard): a read is a SELECT the guard accepts
//     over any table that is not protected, a write is one INSERT, UPDATE or
//     DELETE (`guardWrite`), and access matches. Run by `npm run check:tools`
//     (part of `npm run typecheck`, `npm run dev` and `npm run deploy`), which
//     names the line, and again when a tool is first called in an isolate.
// At call time (`declaredTool`): the model's arguments are validated by the
// zod schema built from the declaration; parameters bound to a claim come
// from the caller's token only (they are not in the input schema); the
// statement is compiled once per isolate and row filter shape, with the
// caller's row scope applied by the guard's rewrite; writes go through the
// audited commit like every hand-written write.
// Namespace import: `import { z }` makes esbuild keep zod's whole namespace object, all ~40 locales included (+370 KiB).
import * as z from 'zod'
import { claimValue } from '../auth/principal.ts'
import { filterColumns, scopedUse, scopeValues, type RowFilter } from '../policy/row-scope.ts'
import type { ToolSettings } from '../policy/policy.ts'
import type { SqlValue } from '../db/queries.ts'
import { claimMissing, defineTool, ToolError, type ToolContext, type ToolDefinition } from './define.ts'

interface StringParameter {
  type: 'string'
  description: string
  pattern?: string
  minLength?: number
  /** default 1000 */
  maxLength?: number
  enum?: readonly [string, ...string[]]
  /** strip surrounding whitespace before the checks */
  trim?: boolean
  optional?: boolean
  default?: string
}
interface NumberParameter {
  type: 'integer' | 'number'
  description: string
  minimum?: number
  maximum?: number
  optional?: boolean
  default?: number
}
interface BooleanParameter {
  type: 'boolean'
  description: string
  optional?: boolean
  default?: boolean
}
/** Bound from the caller's token: not in the input schema, never from the model. */
interface ClaimParameter {
  from: `claim.${string}`
}
type DeclaredParameter = StringParameter | NumberParameter | BooleanParameter | ClaimParameter

type ColumnType = 'text' | 'integer' | 'real' | 'text?' | 'integer?' | 'real?'

/** The settings a declaration carries to the policy (policy.ts ToolSettings). */
interface DeclaredLimits {
  timeoutMs?: number
  outputTokens?: number
  sensitiveFields?: readonly string[]
  auditExcerpt?: boolean
  rateLimit?: { limit: number; windowSeconds: number }
  concurrency?: number
  /** the caller's user confirms each call before it runs (README "Confirmation"); writes only */
  confirm?: boolean
}

interface DeclaredBase extends DeclaredLimits {
  title: string
  description: string
  /** the policy scope a caller needs (policy.ts POLICY_INPUT.scopes) */
  scope: string
  parameters?: Readonly<Record<string, DeclaredParameter>>
  /** one statement; `:name` for each parameter */
  sql: string
}

interface DeclaredRead extends DeclaredBase {
  access: 'read'
  /**
   * `row`: the first row as `{ <row>: {...} }`, or a not-found error with the
   * message `notFound` (`:name` replaced by the argument). `rows`: every row
   * as `{ <rows>: [...] }`, at most `maxRows` (default 100; `truncated: true` when cut).
   */
  result: { row: string; notFound: string } | { rows: string; maxRows?: number }
  /** the output columns and their types, for the output schema (default: rows of any shape) */
  columns?: Readonly<Record<string, ColumnType>>
}

interface DeclaredWrite extends DeclaredBase {
  access: 'write'
  /** the error message when the statement changed no row (`:name` replaced); without it, `{ applied: false }` */
  requireChange?: string
  /** annotation for clients (default true) */
  destructive?: boolean
}

export type DeclaredTool = DeclaredRead | DeclaredWrite
export type ToolsFile = Readonly<Record<string, DeclaredTool>>

/** Typed identity: gives the tools file its checking in the editor. */
export function declareTools<T extends ToolsFile>(tools: T): T {
  return tools
}

export interface Problem {
  tool: string
  /** the field, as a path: ['parameters', 'customerId', 'pattern'] */
  field: string[]
  message: string
}

const TOOL_NAME = /^[a-z][a-z0-9_]{0,63}$/
const PLAIN = /^[A-Za-z_][A-Za-z0-9_]*$/
const CLAIM_PATH = /^claim\.([^.\s]+(?:\.[^.\s]+)*)$/
const RESULT_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/
const DEFAULT_MAX_LENGTH = 1000
const DEFAULT_MAX_ROWS = 100
const MAX_ROWS_LIMIT = 1000

/**
 * The `:name` parameters of a statement, outside string literals, quoted
 * identifiers and comments (scanned as SQLite's tokenizer does). The guard
 * finds the same ones from the parse tree (`checkDeclaredSql` compares).
 */
export function namedParameters(sql: string): string[] {
  const names: string[] = []
  let i = 0
  while (i < sql.length) {
    const c = sql[i]!
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      // to the closing quote; a doubled quote inside is an escaped one (not in [...])
      const close = c === '[' ? ']' : c
      i++
      while (i < sql.length) {
        if (sql[i] === close && close !== ']' && sql[i + 1] === close) i += 2
        else if (sql[i] === close) break
        else i++
      }
      i++
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < sql.length && sql[i] !== '\n') i++
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2)
      i = end === -1 ? sql.length : end + 2
    } else if (c === ':' && /[A-Za-z_]/.test(sql[i + 1] ?? '')) {
      const match = /^:([A-Za-z_][A-Za-z0-9_]*)/.exec(sql.slice(i))!
      if (!names.includes(match[1]!)) names.push(match[1]!)
      i += match[0].length
    } else i++
  }
  return names
}

/** The claim paths the declarations bind parameters to (`claim.tenant` → `tenant`). */
export function declaredClaims(file: ToolsFile): string[] {
  const claims = new Set<string>()
  for (const tool of Object.values(file)) {
    for (const p of Object.values(tool.parameters ?? {})) {
      const path = 'from' in p ? CLAIM_PATH.exec(p.from)?.[1] : undefined
      if (path !== undefined) claims.add(path)
    }
  }
  return [...claims]
}

/** The policy entries of the declared tools (scope and limits), merged into POLICY_INPUT.tools. */
export function declaredSettings(file: ToolsFile): Record<string, Partial<Omit<ToolSettings, 'scope'>> & { scope: string }> {
  return Object.fromEntries(
    Object.entries(file).map(([name, t]) => {
      const entry: Partial<Omit<ToolSettings, 'scope'>> & { scope: string } = { scope: t.scope }
      if (t.timeoutMs !== undefined) entry.timeoutMs = t.timeoutMs
      if (t.outputTokens !== undefined) entry.outputTokens = t.outputTokens
      if (t.sensitiveFields !== undefined) entry.sensitiveFields = t.sensitiveFields
      if (t.auditExcerpt !== undefined) entry.auditExcerpt = t.auditExcerpt
      if (t.rateLimit !== undefined) entry.rateLimit = t.rateLimit
      if (t.concurrency !== undefined) entry.concurrency = t.concurrency
      if (t.confirm === true) entry.confirm = true
      return [name, entry]
    }),
  )
}

const isPositiveInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0

/** Every mistake the declarations hold that needs no SQL parser; [] when none. */
export function checkDeclarations(file: ToolsFile, scopes: ReadonlySet<string>, taken: ReadonlySet<string> = new Set()): Problem[] {
  const problems: Problem[] = []
  for (const [name, tool] of Object.entries(file)) {
    const problem = (field: string[], message: string) => problems.push({ tool: name, field, message })
    if (!TOOL_NAME.test(name)) problem([], 'a tool name is lower case letters, digits and _ (at most 64), starting with a letter')
    if (taken.has(name)) problem([], 'a hand-written tool already has this name')
    if (typeof tool.title !== 'string' || tool.title.trim() === '') problem(['title'], 'is required')
    if (typeof tool.description !== 'string' || tool.description.trim() === '') problem(['description'], 'is required: it is what the model reads')
    if (!scopes.has(tool.scope)) problem(['scope'], `"${String(tool.scope)}" is not a scope of the policy (${[...scopes].join(', ')})`)
    if (tool.access !== 'read' && tool.access !== 'write') problem(['access'], "must be 'read' or 'write'")
    if (typeof tool.sql !== 'string' || tool.sql.trim() === '') {
      problem(['sql'], 'is required')
      continue
    }
    for (const key of ['timeoutMs', 'outputTokens', 'concurrency'] as const) {
      if (tool[key] !== undefined && !isPositiveInt(tool[key])) problem([key], 'must be a positive integer')
    }
    if (tool.rateLimit !== undefined && !(isPositiveInt(tool.rateLimit.limit) && isPositiveInt(tool.rateLimit.windowSeconds))) problem(['rateLimit'], 'must be { limit, windowSeconds }, positive integers')
    if (tool.sensitiveFields !== undefined && !tool.sensitiveFields.every((f) => typeof f === 'string' && f !== '')) problem(['sensitiveFields'], 'must be field names')
    if (tool.confirm !== undefined && typeof tool.confirm !== 'boolean') problem(['confirm'], 'must be true or false')
    if (tool.confirm === true && tool.access !== 'write') problem(['confirm'], 'only a write is confirmed: a read changes nothing')

    const declared = Object.entries(tool.parameters ?? {})
    for (const [param, spec] of declared) checkParameter(spec, (field, message) => problem(['parameters', param, ...field], message), param)
    const used = namedParameters(tool.sql)
    for (const param of used) if (!declared.some(([n]) => n === param)) problem(['sql'], `uses :${param}, which is not a declared parameter`)
    for (const [param] of declared) if (!used.includes(param)) problem(['parameters', param], `is declared but the statement does not use :${param}`)

    if (tool.access === 'read') {
      const result = tool.result as DeclaredRead['result'] | undefined
      if (!result || !(('row' in result && RESULT_KEY.test(result.row) && typeof result.notFound === 'string') || ('rows' in result && RESULT_KEY.test(result.rows)))) {
        problem(['result'], 'must be { row: "<key>", notFound: "<message>" } or { rows: "<key>", maxRows?: n }')
      } else if ('rows' in result && result.maxRows !== undefined && !(isPositiveInt(result.maxRows) && result.maxRows <= MAX_ROWS_LIMIT)) {
        problem(['result', 'maxRows'], `must be an integer from 1 to ${MAX_ROWS_LIMIT}`)
      }
      for (const [column, type] of Object.entries(tool.columns ?? {})) {
        if (!['text', 'integer', 'real', 'text?', 'integer?', 'real?'].includes(type)) problem(['columns', column], 'must be text, integer or real, with ? when it can be NULL')
      }
    } else if (tool.access === 'write') {
      const extra = tool as unknown as Record<string, unknown>
      if (extra['result'] !== undefined || extra['columns'] !== undefined) problem(['result'], 'a write returns { applied }: it has no result or columns')
    }
  }
  return problems
}

function checkParameter(spec: DeclaredParameter, problem: (field: string[], message: string) => void, name: string): void {
  if (!PLAIN.test(name)) problem([], 'a parameter name is letters, digits and _, starting with a letter or _')
  if ('from' in spec) {
    if (!CLAIM_PATH.test(spec.from)) problem(['from'], 'must be claim.<name>, e.g. claim.sub or claim.tenant')
    return
  }
  if (typeof spec.description !== 'string' || spec.description.trim() === '') problem(['description'], 'is required: it is what the model reads')
  const built = parameterSchema(spec)
  if (!built.ok) return problem([built.field], built.message)
  if (spec.default !== undefined && !built.schema.safeParse(spec.default).success) problem(['default'], 'does not pass the parameter\'s own checks')
}

type Built = { ok: true; schema: z.ZodType } | { ok: false; field: string; message: string }

function parameterSchema(spec: Exclude<DeclaredParameter, ClaimParameter>): Built {
  switch (spec.type) {
    case 'string': {
      if (spec.enum !== undefined) {
        if (!Array.isArray(spec.enum) || spec.enum.length === 0 || !spec.enum.every((v) => typeof v === 'string')) return { ok: false, field: 'enum', message: 'must be a non-empty list of strings' }
        return { ok: true, schema: z.enum(spec.enum as [string, ...string[]]) }
      }
      const min = spec.minLength ?? 0
      const max = spec.maxLength ?? DEFAULT_MAX_LENGTH
      if (!Number.isInteger(min) || min < 0) return { ok: false, field: 'minLength', message: 'must be an integer >= 0' }
      if (!Number.isInteger(max) || max < Math.max(min, 1) || max > 100_000) return { ok: false, field: 'maxLength', message: 'must be an integer from minLength (at least 1) to 100000' }
      let schema = spec.trim ? z.string().trim().min(min).max(max) : z.string().min(min).max(max)
      if (spec.pattern !== undefined) {
        let re: RegExp
        try {
          re = new RegExp(spec.pattern, 'u')
        } catch {
          return { ok: false, field: 'pattern', message: `/${spec.pattern}/ is not a valid regular expression` }
        }
        schema = schema.regex(re, `must match ${spec.pattern}`)
      }
      return { ok: true, schema }
    }
    case 'integer':
    case 'number': {
      let schema = spec.type === 'integer' ? z.number().int() : z.number()
      if (spec.minimum !== undefined) schema = schema.min(spec.minimum)
      if (spec.maximum !== undefined) schema = schema.max(spec.maximum)
      if (spec.minimum !== undefined && spec.maximum !== undefined && spec.minimum > spec.maximum) return { ok: false, field: 'minimum', message: 'is above maximum' }
      return { ok: true, schema }
    }
    case 'boolean':
      return { ok: true, schema: z.boolean() }
    default:
      return { ok: false, field: 'type', message: "must be 'string', 'integer', 'number' or 'boolean' (or the parameter is { from: 'claim.<name>' })" }
  }
}

/** The model-facing input schema: every parameter not bound to a claim. */
function inputSchema(name: string, tool: DeclaredTool): z.ZodObject {
  const shape: Record<string, z.ZodType> = {}
  for (const [param, spec] of Object.entries(tool.parameters ?? {})) {
    if ('from' in spec) continue
    const built = parameterSchema(spec)
    if (!built.ok) throw new Error(formatProblem({ tool: name, field: ['parameters', param, built.field], message: built.message }))
    let schema = built.schema.describe(spec.description)
    if (spec.default !== undefined) schema = schema.default(spec.default as never)
    else if (spec.optional) schema = schema.optional()
    shape[param] = schema
  }
  return z.object(shape).strict()
}

const COLUMN: Record<string, z.ZodType> = {
  text: z.string(),
  integer: z.number().int(),
  real: z.number(),
  'text?': z.string().nullable(),
  'integer?': z.number().int().nullable(),
  'real?': z.number().nullable(),
}

function outputSchema(tool: DeclaredTool): z.ZodObject {
  if (tool.access === 'write') return z.object({ applied: z.boolean() })
  const row = tool.columns ? z.object(Object.fromEntries(Object.entries(tool.columns).map(([c, t]) => [c, COLUMN[t]!]))) : z.record(z.string(), z.unknown())
  return 'row' in tool.result ? z.object({ [tool.result.row]: row }) : z.object({ [tool.result.rows]: z.array(row), truncated: z.literal(true).optional() })
}

/** A compiled statement: the text D1 runs, and the names bound to ?1.. then the scoped tables. */
interface Compiled {
  sql: string
  parameters: string[]
  scoped: string[]
}

type SqlCheck = { ok: true; compiled: Compiled } | { ok: false; message: string }

/** The guard's verdict on a declaration's statement, compiled for one row-scope shape (table → column). */
async function compileDeclared(tool: DeclaredTool, rowScope: ReadonlyMap<string, string>): Promise<SqlCheck> {
  const { guardQuery, guardWrite } = await import('../sql/guard.ts')
  if (tool.access === 'read') {
    const maxRows = 'rows' in tool.result ? (tool.result.maxRows ?? DEFAULT_MAX_ROWS) : 1
    const guard = guardQuery(tool.sql, { allowedTables: 'any', maxRows, parameters: 'named', rowScope })
    if (!guard.ok) {
      if (guard.code === 'not_select') return { ok: false, message: `is declared access: 'read' but the SQL guard refuses it as a write or other statement (${guard.message}); declare access: 'write' for a write` }
      return { ok: false, message: `the SQL guard refuses it: ${guard.message}` }
    }
    return { ok: true, compiled: { sql: 'rows' in tool.result ? guard.sql : guard.statement, parameters: guard.parameters, scoped: guard.scoped } }
  }
  const guard = guardWrite(tool.sql, rowScope)
  if (!guard.ok) return { ok: false, message: `the SQL guard refuses it as a write: ${guard.message}` }
  return { ok: true, compiled: { sql: guard.statement, parameters: guard.parameters, scoped: guard.scoped } }
}

/** The SQL problems of every declaration (the guard's checks); [] when none. */
export async function checkDeclaredSql(file: ToolsFile): Promise<Problem[]> {
  const problems: Problem[] = []
  for (const [name, tool] of Object.entries(file)) {
    const checked = await compileDeclared(tool, new Map())
    if (!checked.ok) problems.push({ tool: name, field: ['sql'], message: checked.message })
    else {
      const scanned = namedParameters(tool.sql)
      if (checked.compiled.parameters.length !== scanned.length || !scanned.every((p) => checked.compiled.parameters.includes(p))) {
        problems.push({ tool: name, field: ['sql'], message: `the parser finds the parameters ${checked.compiled.parameters.join(', ') || '(none)'} where the scanner finds ${scanned.join(', ') || '(none)'}: write each as :name outside quotes and comments` })
      }
    }
  }
  return problems
}

export function formatProblem(p: Problem, line?: number): string {
  const where = p.field.length > 0 ? `${p.field.join('.')}: ` : ''
  return `tools.config.ts${line === undefined ? '' : `:${line}`}: tool ${p.tool}: ${where}${p.message}`
}

/** `:name` in a message → the argument's value. */
function fillMessage(message: string, args: Record<string, unknown>): string {
  return message.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (m, name: string) => (args[name] === undefined ? m : String(args[name])))
}

/** One declaration as a tool the boundary (mcp/invoke.ts) runs like any hand-written one. */
export function declaredTool(name: string, tool: DeclaredTool): ToolDefinition {
  const params = tool.parameters ?? {}
  // compiled once per isolate and row-scope shape (table → column); a statement the guard refuses fails every call
  const ready = new Map<string, Compiled>()
  const pending = new Map<string, Promise<Compiled>>()
  const compile = (filter: RowFilter): Compiled | Promise<Compiled> => {
    const key = filter.size === 0 ? '' : [...filter].map(([table, f]) => `${table}.${f.column}`).join(',')
    const done = ready.get(key)
    if (done) return done
    let entry = pending.get(key)
    if (!entry) {
      entry = compileDeclared(tool, filterColumns(filter)).then((r) => {
        pending.delete(key)
        if (!r.ok) throw new Error(formatProblem({ tool: name, field: ['sql'], message: r.message }))
        ready.set(key, r.compiled)
        return r.compiled
      })
      pending.set(key, entry)
    }
    return entry
  }
  const bind = (c: Compiled, args: Record<string, unknown>, ctx: ToolContext): SqlValue[] => {
    const values = c.parameters.map((p): SqlValue => {
      const spec = params[p]
      if (spec && 'from' in spec) {
        const claim = spec.from.slice('claim.'.length)
        const value = claimValue(ctx.principal, claim)
        if (value === undefined) throw claimMissing(claim, `${name} binds :${p} to it`)
        return value
      }
      const value = args[p]
      return value === undefined ? null : typeof value === 'boolean' ? (value ? 1 : 0) : (value as SqlValue)
    })
    const scope = scopeValues(ctx.data.rowFilter, c.scoped)
    if (!scope.ok) throw claimMissing(scope.claim, scopedUse(scope.table))
    return [...values, ...scope.values]
  }
  const read = tool.access === 'read'
  return defineTool({
    name,
    title: tool.title,
    description: tool.description,
    input: inputSchema(name, tool),
    output: outputSchema(tool),
    annotations: read
      ? { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false }
      : { readOnlyHint: false, destructiveHint: tool.destructive ?? true, idempotentHint: false, openWorldHint: false },
    async run(args: Record<string, unknown>, ctx) {
      const compiled = compile(ctx.data.rowFilter)
      const c = compiled instanceof Promise ? await compiled : compiled
      const values = bind(c, args, ctx)
      if (tool.access === 'write') {
        const output = { applied: true }
        if (await ctx.data.write(c.sql, values, output)) return output
        if (tool.requireChange !== undefined) throw new ToolError(fillMessage(tool.requireChange, args), 'no_change')
        return { applied: false }
      }
      if ('row' in tool.result) {
        const row = await ctx.data.selectFirst(c.sql, values)
        if (!row) throw new ToolError(fillMessage(tool.result.notFound, args), 'not_found')
        return { [tool.result.row]: row }
      }
      const rows = await ctx.data.select(c.sql, values)
      const max = tool.result.maxRows ?? DEFAULT_MAX_ROWS
      return rows.length > max ? { [tool.result.rows]: rows.slice(0, max), truncated: true } : { [tool.result.rows]: rows }
    },
  })
}
