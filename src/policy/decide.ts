// Authorization decisions: pure functions over (policy, principal, request).
// Nothing here knows about HTTP; middleware/authorize.ts maps a refusal to
// the 403 insufficient_scope challenge.
import type { Policy, ToolSettings } from './policy.ts'

export interface Grant {
  /** Space-separated `scope` claim of the token, already split. */
  scopes: readonly string[]
  /** The token's roles (after AUTH_ROLE_MAP), if any. */
  roles: readonly string[]
}

/**
 * Effective scopes = token scopes ∪ scopes of each of the token's roles,
 * restricted to scopes the policy knows. Unknown scopes, `*`, and unknown
 * roles grant nothing.
 */
export function effectiveScopes(policy: Policy, grant: Grant): ReadonlySet<string> {
  const out = new Set<string>()
  for (const scope of grant.scopes) if (policy.scopes.has(scope)) out.add(scope)
  for (const role of grant.roles) for (const scope of policy.roles.get(role) ?? []) out.add(scope)
  return out
}

export type ToolDecision =
  | { allow: true; tool: ToolSettings }
  | { allow: false; reason: 'unknown_tool' }
  | { allow: false; reason: 'insufficient_scope'; scope: string }

/** May a caller holding `scopes` call `toolName`? */
export function decideTool(policy: Policy, scopes: ReadonlySet<string>, toolName: string): ToolDecision {
  const tool = policy.tools.get(toolName)
  if (!tool) return { allow: false, reason: 'unknown_tool' }
  if (!scopes.has(tool.scope)) return { allow: false, reason: 'insufficient_scope', scope: tool.scope }
  return { allow: true, tool }
}

/** The tools a caller may see in tools/list, in policy order. */
export function visibleTools(policy: Policy, scopes: ReadonlySet<string>): string[] {
  return [...policy.tools].filter(([, t]) => scopes.has(t.scope)).map(([name]) => name)
}

/** Every scope of the policy, for the PRM document's `scopes_supported`. */
export function supportedScopes(policy: Policy): string[] {
  return [...policy.scopes.keys()]
}
