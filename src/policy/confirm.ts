// Which calls need the person behind the agent to confirm them first (the
// policy's `confirm` setting, per tool):
//
//   confirm: true                                  every call
//   confirm: { when: { status: ['cancelled'] } }   calls whose `status` argument is one of these
//
// A rule with several arguments needs all of them to match. Pure: the policy
// validates rules when it loads, the MCP layer asks `needsConfirmation` per call.

type ConfirmValue = string | number | boolean

export type ConfirmRule = true | { when: Readonly<Record<string, readonly ConfirmValue[]>> }

/** Why a rule is malformed, or undefined when it is well formed. */
export function confirmRuleProblem(rule: unknown): string | undefined {
  if (rule === true) return undefined
  if (typeof rule !== 'object' || rule === null || !('when' in rule)) return 'must be true or { when: { argument: [values] } }'
  const when = (rule as { when: unknown }).when
  if (typeof when !== 'object' || when === null || Array.isArray(when) || Object.keys(when).length === 0) return 'when must name at least one argument'
  for (const [argument, values] of Object.entries(when)) {
    if (!Array.isArray(values) || values.length === 0) return `when.${argument} must list at least one value`
    if (!values.every((v) => ['string', 'number', 'boolean'].includes(typeof v))) return `when.${argument} may list only strings, numbers and booleans`
  }
  return undefined
}

/** Whether a call with `args` (already validated by the tool's schema) needs confirmation under `rule`. */
export function needsConfirmation(rule: ConfirmRule | undefined, args: unknown): boolean {
  if (rule === undefined) return false
  if (rule === true) return true
  if (typeof args !== 'object' || args === null) return false
  const values = args as Record<string, unknown>
  return Object.entries(rule.when).every(([argument, listed]) => (listed as readonly unknown[]).includes(values[argument]))
}
