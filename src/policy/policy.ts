// The access policy, as data: the seed's role table made explicit.
//
//   roles  ──grant──▶  scopes  ──required by──▶  tools
//
// Editing this file is the only change needed to add a role, add a tool or
// retune a tool's limits. Every decision reads it: the tools/list filter, the
// 403 challenge's `scope`, the PRM document's `scopes_supported`, and each
// tool's timeout, output cap and sensitive fields. The table is validated when
// the module loads (`validatePolicy`): a tool without a known scope or a role
// naming an unknown scope stops the Worker from starting, with a message.
//
// Admin's "all tools" is not a `*` scope: the `admin` role lists ALL_SCOPES, a
// marker this module expands to every scope the tools require. A token whose
// `scope` claim says `*` gets nothing from it.

import DECLARED_TOOLS from '../../tools.config.ts'
import { checkDeclarations, declaredSettings, formatProblem, type Problem, type ToolsFile } from '../tools/declared.ts'
import { confirmRuleProblem, type ConfirmRule } from './confirm.ts'

export const ALL_SCOPES = Symbol('all scopes of the policy')

export interface ToolSettings {
  /** The OAuth scope a caller needs to see and call the tool. */
  scope: string
  /** Wall time one invocation may take before it is aborted. */
  timeoutMs: number
  /** Estimated tokens of output before the result is truncated with a marker. */
  outputTokens: number
  /** Argument or result keys whose values never reach the audit log. */
  sensitiveFields: readonly string[]
  /**
   * Whether the audit row keeps a (redacted) excerpt of the output. Off for
   * tools whose output keys the caller chooses (SQL column aliases defeat
   * key-based redaction): their rows keep only the output's size and digest.
   */
  auditExcerpt: boolean
  /** Calls per `sub` per window (enforced by the rate-limit layer). */
  rateLimit: { limit: number; windowSeconds: number }
  /** At most this many invocations of this tool per `sub` at once (unset: only the per-sub cap). */
  concurrency?: number
  /**
   * Calls the caller's user must confirm before they run (policy/confirm.ts;
   * README "Confirmation"): the first round asks, the change happens only on
   * the confirmed one. Unset: no confirmation.
   */
  confirm?: ConfirmRule
}

/** Limits per `sub` across methods (issue #10; enforced by middleware/limits.ts). */
export const REQUEST_LIMITS = {
  /** tools/call per `sub` per window (seed maxRequestsPerMinute). */
  toolsCall: { limit: 60, windowSeconds: 60 },
  /** Every other MCP method per `sub` per window. */
  otherMethods: { limit: 600, windowSeconds: 60 },
  /** tools/call in flight per `sub` (seed maxConcurrentRequests). */
  concurrentToolCalls: 5,
  /**
   * Bound on one round trip to the limit store (Durable Object RPC or Upstash
   * REST call). Past it the call is refused with 503 (or served, under
   * RATE_LIMIT_FAIL_MODE=open): a hung store never holds a request.
   */
  storeTimeoutMs: 1_000,
} as const

export interface PolicyInput {
  scopes: Record<string, string>
  roles: Record<string, readonly string[] | typeof ALL_SCOPES>
  defaults: Omit<ToolSettings, 'scope'>
  tools: Record<string, Partial<Omit<ToolSettings, 'scope'>> & { scope: string }>
  /** Arguments larger than this many estimated tokens are refused. */
  maxArgumentTokens: number
  /** Rows `execute_query` returns at most. */
  maxQueryRows: number
  /** Bytes of JSON `execute_query` returns at most (before the token cap). */
  maxQueryBytes: number
  /** Rows one `execute_query` statement may visit, priced from SQLite's plan before it runs (src/sql/plan-budget.ts). */
  maxQueryVisitedRows: number
  /** Tables `execute_query` may read. */
  queryableTables: readonly string[]
  /**
   * Refusals (denied, invalid_input, rate_limited) per `sub` per window that
   * get an audit row each; past it, the sub's refusals in that window are
   * counted in one aggregate row per outcome (src/audit/sequencer.ts).
   */
  refusalBudget: { limit: number; windowSeconds: number }
}

export interface Policy {
  scopes: ReadonlyMap<string, string>
  roles: ReadonlyMap<string, ReadonlySet<string>>
  tools: ReadonlyMap<string, ToolSettings>
  maxArgumentTokens: number
  maxQueryRows: number
  maxQueryBytes: number
  maxQueryVisitedRows: number
  queryableTables: readonly string[]
  refusalBudget: { limit: number; windowSeconds: number }
}

const PERSONAL_DATA = ['email', 'phone', 'address'] as const

/** The hand-written part of the table; POLICY_INPUT adds the declared tools. */
const HAND_WRITTEN: PolicyInput = {
  scopes: {
    'customers:read': 'Read customer records',
    'orders:read': 'List and read orders',
    'products:read': 'Search the product catalogue',
    'orders:write': 'Change the status of orders',
    'tickets:write': 'Open support tickets',
    'search:read': 'Full-text search across customers, orders and products',
    'sql:read': 'Run read-only SQL over the business tables',
  },
  roles: {
    'read-only': ['customers:read', 'orders:read', 'products:read'],
    editor: ['customers:read', 'orders:read', 'orders:write', 'tickets:write'],
    admin: ALL_SCOPES,
  },
  // The seed's serverConfig: timeoutMs 30000, maxTokensPerRequest 10000,
  // maxRequestsPerMinute 60.
  defaults: {
    timeoutMs: 30_000,
    outputTokens: 10_000,
    sensitiveFields: PERSONAL_DATA,
    auditExcerpt: true,
    rateLimit: { limit: 60, windowSeconds: 60 },
  },
  tools: {
    // get_customer and search_products are declared in tools.config.ts, with their settings
    list_orders: { scope: 'orders:read' },
    // cancelling is final: the user confirms it (README "Confirmation")
    update_order: { scope: 'orders:write', confirm: { when: { status: ['cancelled'] } } },
    create_ticket: { scope: 'tickets:write', sensitiveFields: [...PERSONAL_DATA, 'body'] },
    search: { scope: 'search:read', rateLimit: { limit: 60, windowSeconds: 60 } },
    execute_query: { scope: 'sql:read', timeoutMs: 10_000, auditExcerpt: false, concurrency: 1 },
  },
  maxArgumentTokens: 10_000,
  maxQueryRows: 500,
  maxQueryBytes: 256 * 1024,
  // ~0.1-1 s of one D1 database (SQLite visits 10^7-10^8 rows a second in
  // simple loops) and at most 10 M rows read on the D1 bill per query
  maxQueryVisitedRows: 10_000_000,
  queryableTables: ['customers', 'orders', 'products', 'tickets'],
  // two refusals a second: a confused client leaves a readable trail, a flood a bounded one
  refusalBudget: { limit: 120, windowSeconds: 60 },
}

export class PolicyError extends Error {
  override name = 'PolicyError'
}

/** A tools file with mistakes: every one, each naming its tool and field. */
export class DeclarationError extends PolicyError {
  override name = 'DeclarationError'
  constructor(readonly problems: readonly Problem[]) {
    super(problems.map((p) => formatProblem(p)).join('\n'))
  }
}

/** Expands and checks a policy table; throws PolicyError naming the problem. */
export function validatePolicy(input: PolicyInput): Policy {
  const scopes = new Map(Object.entries(input.scopes))
  const scopeToken = /^[\x21\x23-\x5B\x5D-\x7E]+$/ // RFC 6749 scope-token
  for (const scope of scopes.keys()) {
    if (!scopeToken.test(scope) || scope === '*') throw new PolicyError(`policy: "${scope}" is not a valid scope name`)
    // A refresh-token grant, not a permission on this resource: never advertised here.
    if (scope === OFFLINE_ACCESS) throw new PolicyError(`policy: "${OFFLINE_ACCESS}" cannot be a scope of the policy (it is not a permission on this server)`)
  }

  const tools = new Map<string, ToolSettings>()
  for (const [name, settings] of Object.entries(input.tools)) {
    if (!settings.scope) throw new PolicyError(`policy: tool ${name} has no scope`)
    if (!scopes.has(settings.scope)) throw new PolicyError(`policy: tool ${name} requires unknown scope "${settings.scope}"`)
    const merged: ToolSettings = { ...input.defaults, ...settings }
    if (!(merged.timeoutMs > 0)) throw new PolicyError(`policy: tool ${name} needs a positive timeoutMs`)
    if (!(merged.outputTokens > 0)) throw new PolicyError(`policy: tool ${name} needs a positive outputTokens`)
    if (!(merged.rateLimit.limit > 0 && merged.rateLimit.windowSeconds > 0)) throw new PolicyError(`policy: tool ${name} needs a positive rate limit`)
    const confirmProblem = merged.confirm === undefined ? undefined : confirmRuleProblem(merged.confirm)
    if (confirmProblem) throw new PolicyError(`policy: tool ${name} confirm ${confirmProblem}`)
    tools.set(name, merged)
  }

  const roles = new Map<string, ReadonlySet<string>>()
  for (const [role, granted] of Object.entries(input.roles)) {
    if (granted === ALL_SCOPES) {
      roles.set(role, new Set(scopes.keys()))
      continue
    }
    for (const scope of granted) {
      if (!scopes.has(scope)) throw new PolicyError(`policy: role ${role} grants unknown scope "${scope}"`)
    }
    roles.set(role, new Set(granted))
  }

  for (const scope of scopes.keys()) {
    if (![...tools.values()].some((t) => t.scope === scope)) throw new PolicyError(`policy: scope "${scope}" is required by no tool`)
  }
  if (!(input.maxArgumentTokens > 0)) throw new PolicyError('policy: maxArgumentTokens must be positive')
  if (!(input.maxQueryRows > 0)) throw new PolicyError('policy: maxQueryRows must be positive')
  if (!(input.maxQueryBytes > 0)) throw new PolicyError('policy: maxQueryBytes must be positive')
  if (!(input.maxQueryVisitedRows >= 1)) throw new PolicyError('policy: maxQueryVisitedRows must be at least 1')
  const budget = input.refusalBudget
  if (!(Number.isSafeInteger(budget.limit) && budget.limit >= 0 && Number.isSafeInteger(budget.windowSeconds) && budget.windowSeconds > 0)) {
    throw new PolicyError('policy: refusalBudget needs an integer limit >= 0 and a positive integer windowSeconds')
  }
  for (const table of input.queryableTables) {
    if (!/^[a-z_][a-z0-9_]*$/.test(table) || table.startsWith('sqlite_') || table.startsWith('audit_')) {
      throw new PolicyError(`policy: table "${table}" cannot be queryable`)
    }
  }

  return {
    scopes,
    roles,
    tools,
    maxArgumentTokens: input.maxArgumentTokens,
    maxQueryRows: input.maxQueryRows,
    maxQueryBytes: input.maxQueryBytes,
    maxQueryVisitedRows: input.maxQueryVisitedRows,
    queryableTables: input.queryableTables,
    refusalBudget: { ...budget },
  }
}

// ---------------------------------------------------------------------------
// Scopes in challenges (MCP 2025-11-25 "Scope Selection Strategy" and
// "Runtime Insufficient Scope Errors").
//
// A client asks its authorization server for exactly the `scope` of our 401
// challenge; without one it asks for every scope of `scopes_supported`, which
// an authorization server refuses (`invalid_scope`) for a client registered
// with fewer. So:
//
//  - 401 (no or bad token): `scope` = the START SCOPES, the scopes EVERY role
//    of the policy grants: the baseline any caller of this deployment is
//    entitled to (today `customers:read orders:read`, enough to connect, list
//    and call get_customer and list_orders). A least-privileged client is
//    never told to ask for more than it could be given. Should the roles share
//    no scope, the start scopes are those of the role granting the fewest
//    (ties: the first such role in the table).
//  - 403 (insufficient_scope): `scope` = every scope the refused call needs,
//    in one challenge: for tools/call, the tool's scope (one per tool; see
//    decideTool and middleware/authorize.ts). Per
//    RFC 6750 §3.1 the challenge names what this request needs; the client
//    keeps what it already holds (the MCP SDK v2 requests the union of its
//    current and the challenged scopes on step-up).
//  - `offline_access` is never advertised: not in `scopes_supported`, not in
//    any challenge (validatePolicy refuses it as a policy scope).

export const OFFLINE_ACCESS = 'offline_access'

/** The 401 challenge's `scope`: the scopes every role grants, in policy order. */
export function startScopes(policy: Policy): string[] {
  const roles = [...policy.roles.values()]
  const all = [...policy.scopes.keys()].filter((s) => s !== OFFLINE_ACCESS)
  if (roles.length === 0) return []
  const common = all.filter((scope) => roles.every((granted) => granted.has(scope)))
  if (common.length > 0) return common
  const least = roles.reduce((a, b) => (b.size < a.size ? b : a))
  return all.filter((scope) => least.has(scope))
}

/**
 * The whole table: the hand-written entries, then the declared tools' own
 * (tools.config.ts). Loading this module fails if a declaration is invalid
 * (the SQL of a declaration is checked by `npm run check:tools`).
 */
export const POLICY_INPUT: PolicyInput = withDeclaredTools(DECLARED_TOOLS)

/** The hand-written table plus `file`'s tools; throws DeclarationError listing every mistake of the file. */
export function withDeclaredTools(file: ToolsFile): PolicyInput {
  const problems = checkDeclarations(file, new Set(Object.keys(HAND_WRITTEN.scopes)), new Set(Object.keys(HAND_WRITTEN.tools)))
  if (problems.length > 0) throw new DeclarationError(problems)
  return { ...HAND_WRITTEN, tools: { ...HAND_WRITTEN.tools, ...declaredSettings(file) } }
}

/** The policy in force. Loading this module fails if the table is invalid. */
export const POLICY: Policy = validatePolicy(POLICY_INPUT)
