// Builds the audit record of one tools/call from what the pipeline knows:
// who (principal, never the token), what (tool, redacted and capped
// arguments), how it ended (outcome, HTTP status, error code, duration) and
// what came back (size of the tool's output and the SHA-256 of its REDACTED
// form, plus a redacted, capped excerpt — neither for tools whose output keys
// the caller picks, such as execute_query: size only). Redaction is driven by the tool's
// sensitive fields in the policy; emails, phone numbers, card numbers and
// tokens in free text are redacted too.
//
// Why the digest is of the redacted output (issue #13): a digest of the
// unredacted output lets anyone holding the row brute-force a redacted value
// (a phone number has ~10^10 candidates, and the rest of the output is in the
// excerpt). The digest of the redacted output is the same whatever the
// redacted values were, so it reveals nothing the excerpt does not; it needs
// no secret, and whoever holds the output the client received can recompute
// it: SHA-256 of JSON.stringify(redact(JSON.parse(output), sensitiveFields)).
// `output_bytes` stays the size of what the client received.
//
// Refusals (denied, invalid_input, rate_limited) keep only a 256-byte excerpt
// of the redacted arguments in input_json, with the size (`input_bytes`) and
// SHA-256 (`input_sha256`) of the whole redacted arguments JSON: a flood of
// refused 4 KB calls writes a few hundred bytes per row. The digest is of the
// REDACTED JSON for the reason above; it can confirm a guess of the part past
// the excerpt, which redaction did not hide (a 4 KiB row would have shown it).
import type { Principal } from '../auth/principal.ts'
import { POLICY } from '../policy/policy.ts'
import type { AuditOutcome, AuditRecord } from './chain.ts'
import { isRefusal } from './chain.ts'
import { sha256Hex } from '../digest.ts'
import { capJson, capText, redact, redactCredentials, redactText } from './redact.ts'

const INPUT_CAP_BYTES = 4096
const REFUSAL_INPUT_CAP_BYTES = 256
const EXCERPT_CAP_BYTES = 1024
const TOOL_CAP_CHARS = 128
const SUB_CAP_CHARS = 256
const DEFAULT_SENSITIVE: ReadonlySet<string> = new Set(['email', 'phone', 'address'])

/** What the request says about one tools/call, as plain values. */
export interface CallFacts {
  requestId: string
  /** When the request arrived (ms since epoch). */
  startedAt: number
  principal: Principal
  /** The JSON-RPC method (tools/call when absent). */
  method: string | undefined
  /** params.name, when it is a string. */
  toolName: string | undefined
  /** params.arguments. */
  toolArguments: unknown
  /** Self-reported client identity. */
  client: { name: string; version: string } | undefined
}

export interface CallEnding {
  outcome: AuditOutcome
  httpStatus: number
  errorCode?: string | undefined
  /** JSON text of the tool's output (structured content), when it returned one. */
  outputJson?: string | undefined
}

function settingsFor(tool: string | undefined) {
  return tool === undefined ? undefined : POLICY.tools.get(tool)
}

/** One Set per tool's settings, built once: redact() caches its work per Set. */
const sensitiveSets = new WeakMap<object, ReadonlySet<string>>()
function sensitiveOf(settings: ReturnType<typeof settingsFor>): ReadonlySet<string> {
  if (!settings) return DEFAULT_SENSITIVE
  let set = sensitiveSets.get(settings)
  if (!set) sensitiveSets.set(settings, (set = new Set(settings.sensitiveFields)))
  return set
}

export async function auditRecord(facts: CallFacts, ending: CallEnding, now = Date.now()): Promise<AuditRecord> {
  const settings = settingsFor(facts.toolName)
  const sensitive = sensitiveOf(settings)
  const output = ending.outputJson
  const redactedOutput = output === undefined ? undefined : redactedJson(output, sensitive)
  // Where the output's keys are the caller's (auditExcerpt off), redaction by key cannot be
  // trusted, so neither an excerpt nor an unkeyed digest is kept: a digest over clear values
  // would confirm a guessed one (a dictionary attack on addresses). Size only.
  const described = settings?.auditExcerpt ?? true
  const excerpt = redactedOutput !== undefined && described ? capText(redactedOutput, EXCERPT_CAP_BYTES) : null
  const input = await inputColumns(facts.toolArguments, sensitive, isRefusal(ending.outcome))
  return {
    ts: new Date(facts.startedAt).toISOString(),
    request_id: facts.requestId,
    // The token's subject is the issuer's text: kept readable (it is the "who"),
    // but capped and scrubbed of credentials.
    sub: capChars(redactCredentials(facts.principal.sub), SUB_CAP_CHARS),
    token_id: facts.principal.tokenId,
    // Self-reported by the client: scrubbed like any free text.
    client_name: facts.client ? capChars(redactText(facts.client.name), TOOL_CAP_CHARS) : null,
    client_version: facts.client ? capChars(redactText(facts.client.version), TOOL_CAP_CHARS) : null,
    method: facts.method ?? 'tools/call',
    // The caller picks the tool name (an unknown tool is recorded too): scrubbed like free text.
    tool: facts.toolName === undefined ? null : capChars(redactText(facts.toolName), TOOL_CAP_CHARS),
    outcome: ending.outcome,
    http_status: ending.httpStatus,
    duration_ms: Math.max(0, now - facts.startedAt),
    input_json: input.input_json,
    output_bytes: output === undefined ? null : new TextEncoder().encode(output).byteLength,
    output_sha256: redactedOutput === undefined || !described ? null : await sha256Hex(redactedOutput),
    output_excerpt: excerpt,
    error_code: ending.errorCode ?? null,
    input_bytes: input.input_bytes,
    input_sha256: input.input_sha256,
  }
}

/** input_json (4 KiB of the redacted arguments; a refusal: 256 bytes, plus the whole redacted JSON's size and digest). */
async function inputColumns(
  args: unknown,
  sensitive: ReadonlySet<string>,
  refusal: boolean,
): Promise<Pick<AuditRecord, 'input_json' | 'input_bytes' | 'input_sha256'>> {
  if (args === undefined) return { input_json: null, input_bytes: null, input_sha256: null }
  const redacted = redact(args, sensitive)
  if (!refusal) return { input_json: capJson(redacted, INPUT_CAP_BYTES), input_bytes: null, input_sha256: null }
  const whole = capJson(redacted, Number.POSITIVE_INFINITY)
  return {
    input_json: capText(whole, REFUSAL_INPUT_CAP_BYTES),
    input_bytes: new TextEncoder().encode(whole).byteLength,
    input_sha256: await sha256Hex(whole),
  }
}

/** JSON text of the redacted output (a text that is not JSON is redacted as a string). */
export function redactedJson(output: string, sensitive: ReadonlySet<string>): string {
  let parsed: unknown = output
  try {
    parsed = JSON.parse(output)
  } catch {
    // keep the text; redact() scrubs it as a string
  }
  return JSON.stringify(redact(parsed, sensitive)) ?? 'null'
}

/** At most `max` characters (code points), never half a surrogate pair. */
function capChars(text: string, max: number): string {
  if (text.length <= max) return text
  return Array.from(text).slice(0, max).join('')
}
