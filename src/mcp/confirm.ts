// Confirmation of the calls the policy marks `confirm` (policy/confirm.ts):
// the person behind the agent is asked, and the change happens only on the
// round that carries their "yes". README "Confirmation".
//
//   round 1  the call arrives without a request state: the tool states what
//            would change (`describeChange`, from a read of the current data)
//            and the call answers `input_required` with one form elicitation
//            (`confirm: boolean`) and a request state; row
//            `confirmation_requested`.
//   round 2  the same call again, with the state and the user's answer:
//            the state must verify (HMAC-SHA256 under CONFIRM_STATE_KEY, the
//            SDK's codec, expiring after CONFIRM_TTL_SECONDS), name this
//            caller's `sub`, this tool and the SHA-256 of these arguments, be
//            used for the first time (its nonce is recorded in the replay
//            store until it expires), and the change described must still be
//            the one the user saw. Then: accepted with confirm = true → the
//            tool runs, row `confirmed`; anything else → nothing runs, row
//            `declined`; a state past its time → row `expired`.
//
// On 2026-07-28 the two rounds are two HTTP requests (multi-round-trip
// requests); on 2025-era requests the SDK's shim sends the elicitation on the
// call's own stream and re-enters the handler in the same request
// (mcp/elicitation.ts carries the answer back), so round 1's row is written
// as a round of the call and round 2's as the call's own.
//
// What the state proves: that this server asked this caller about exactly
// this call, recently, once. What it cannot prove: that a person, not the
// client program, answered; the client shows the question. A client that
// cannot ask (no form elicitation capability) is refused, never served.
import {
  createRequestStateCodec,
  inputRequired,
  inputResponse,
  type CallToolResult,
  type ClientCapabilities,
  type InputRequiredResult,
  type RequestStateCodec,
  type ServerContext,
} from '@modelcontextprotocol/server'
import { sha256Hex } from '../digest.ts'
import type { ReplayStore } from '../auth/dpop.ts'
import { durableReplayStore } from '../auth/dpop-store.ts'
import type { Config } from '../config.ts'
import type { LegacySession } from './elicitation.ts'
import type { ElicitationRendezvous } from './rendezvous.ts'
import type { ToolSettings } from '../policy/policy.ts'
import type { ToolDefinition } from '../tools/define.ts'
import { describeChange, invokeTool, refuseCall } from './invoke.ts'
import type { Era, RequestScope } from './scope.ts'

/** What a request state carries (signed, not encrypted: the client can read it). */
interface ConfirmState {
  sub: string
  tool: string
  /** SHA-256 hex of the arguments' canonical JSON */
  args: string
  /** SHA-256 hex of the question the user was asked */
  asked: string
  /** single-use id, recorded in the replay store on round 2 */
  nonce: string
  /** seconds since epoch; the codec enforces it too */
  expiresAt: number
}

/** How this deployment confirms calls (config.confirm) and where it keeps what that needs. */
export interface Confirmations {
  codec: RequestStateCodec<ConfirmState>
  /** Mcp-Session-Id records of 2025-era clients that can elicit (mcp/elicitation.ts). */
  sessions: RequestStateCodec<LegacySession>
  ttlSeconds: number
  replay: ReplayStore
  rendezvous: DurableObjectNamespace<ElicitationRendezvous>
}

/** The confirmations of a request under `settings`; undefined without CONFIRM_STATE_KEY. */
export function confirmations(settings: Config['confirm'], env: Env): Confirmations | undefined {
  if (!settings) return undefined
  return {
    ...codecsFor(settings.key, settings.ttlSeconds),
    ttlSeconds: settings.ttlSeconds,
    replay: durableReplayStore(env.CONFIRM_REPLAY),
    rendezvous: env.ELICITATIONS,
  }
}

/** How long past its state's expiry a nonce stays recorded (the codec's clock and ours may differ by a second). */
const NONCE_SLACK_SECONDS = 5

/** The key of the one input request of round 1. */
const CONFIRM_KEY = 'confirm'
const REQUESTED_SCHEMA = {
  type: 'object' as const,
  properties: { confirm: { type: 'boolean' as const, title: 'Confirm', description: 'Yes: make this change' } },
  required: ['confirm'],
}

/** How long a session record (mcp/elicitation.ts) is honoured: a working day. */
const SESSION_TTL_SECONDS = 12 * 3600

const codecs = new Map<string, Pick<Confirmations, 'codec' | 'sessions'>>()

/**
 * The two codecs of CONFIRM_STATE_KEY, made once per isolate: request states,
 * and session records under a key of their own (domain-separated), so that
 * neither verifies as the other.
 */
function codecsFor(key: string, ttlSeconds: number): Pick<Confirmations, 'codec' | 'sessions'> {
  const id = `${ttlSeconds}\0${key}`
  let made = codecs.get(id)
  if (!made) {
    made = {
      codec: createRequestStateCodec<ConfirmState>({ key, ttlSeconds }),
      sessions: createRequestStateCodec<LegacySession>({ key: `${key}\0mcp-bastion legacy session`, ttlSeconds: SESSION_TTL_SECONDS }),
    }
    codecs.set(id, made)
  }
  return made
}

/** JSON with object keys sorted, so equal arguments digest equally whatever their order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/** Form elicitation support as declared (a bare `elicitation: {}` means form, as before modes existed). */
export function canElicitForm(capabilities: ClientCapabilities | undefined): boolean {
  const elicitation = capabilities?.elicitation
  if (elicitation === undefined || elicitation === null || typeof elicitation !== 'object') return false
  const modes = elicitation as { form?: unknown; url?: unknown }
  return modes.form !== undefined || modes.url === undefined
}

/** One round of a call the policy says the user confirms. */
interface ConfirmedCall {
  tool: ToolDefinition
  settings: ToolSettings
  /** as the tool's schema parsed them */
  args: unknown
  scope: RequestScope
  ctx: ServerContext
  era: Era
  /** what the client declared it can do (2026-07-28: this request's envelope; 2025-era: its session record) */
  capabilities: ClientCapabilities | undefined
}

/** Round 1 asks, round 2 acts on the answer. */
export async function confirmedCall(call: ConfirmedCall): Promise<CallToolResult | InputRequiredResult> {
  const { tool, settings, args, scope, ctx } = call
  const confirm = scope.confirm
  if (!confirm) {
    scope.log('error', 'confirmation_unconfigured', { tool: tool.name })
    return refuseCall(scope, { outcome: 'error', errorCode: 'confirmation_unavailable', outputJson: undefined },
      `${tool.name} needs the user's confirmation for this call, and this server cannot ask for one (CONFIRM_STATE_KEY is not set). Nothing was changed.`)
  }
  const wire = ctx.mcpReq.requestState<string>()
  if (typeof wire !== 'string') return ask(call, confirm)
  const expired = () =>
    refuseCall(scope, { outcome: 'expired', errorCode: 'confirmation_expired', outputJson: undefined },
      `The confirmation of this ${tool.name} call expired (it is valid for ${confirm.ttlSeconds} s). Nothing was changed; call ${tool.name} again to ask again.`)

  let state: ConfirmState
  try {
    state = await confirm.codec.verify(wire, ctx)
  } catch (error) {
    if (error instanceof Error && error.message === 'expired') {
      return expired()
    }
    return refuseCall(scope, { outcome: 'invalid_input', errorCode: 'confirmation_invalid', outputJson: undefined },
      'The confirmation state of this call is not one this server issued (it does not verify). Nothing was changed.')
  }
  const argsDigest = await sha256Hex(canonicalJson(args))
  if (state.sub !== scope.principal.sub || state.tool !== tool.name || state.args !== argsDigest) {
    return refuseCall(scope, { outcome: 'invalid_input', errorCode: 'confirmation_mismatch', outputJson: undefined },
      `The confirmation state was issued for another call (another caller, tool or arguments), not for this ${tool.name} call. Nothing was changed.`)
  }
  // the codec's own expiry may run a second past expiresAt: the nonce is kept past both
  if (state.expiresAt < Math.floor(Date.now() / 1000)) {
    return expired()
  }
  let fresh: boolean
  try {
    fresh = await confirm.replay.checkAndStore(`confirm:${state.sub}`, state.nonce, state.expiresAt + NONCE_SLACK_SECONDS)
  } catch (error) {
    scope.log('error', 'confirmation_store_failed', { tool: tool.name, error: error instanceof Error ? error.message : String(error) })
    return refuseCall(scope, { outcome: 'error', errorCode: 'confirmation_store', outputJson: undefined },
      `internal error (request ${scope.requestId}): the confirmation could not be checked. Nothing was changed.`)
  }
  if (!fresh) {
    return refuseCall(scope, { outcome: 'invalid_input', errorCode: 'confirmation_used', outputJson: undefined },
      `This confirmation was already used: each one allows one ${tool.name} call. Nothing was changed; call ${tool.name} again to ask again.`)
  }

  const answer = inputResponse(ctx.mcpReq.inputResponses, CONFIRM_KEY)
  const accepted = answer.kind === 'elicit' && answer.action === 'accept' && answer.content?.['confirm'] === true
  if (!accepted) {
    const how = answer.kind !== 'elicit' ? 'gave no answer' : answer.action === 'accept' ? 'answered no' : answer.action === 'decline' ? 'declined' : 'cancelled'
    return refuseCall(scope, { outcome: 'declined', errorCode: `confirmation_${answer.kind === 'elicit' ? answer.action : 'missing'}`, outputJson: undefined },
      `The user ${how}: ${tool.name} did not run and nothing was changed.`)
  }
  // the data may have moved since the question: the user confirmed what they were shown, nothing else
  const now = await describeChange(tool, settings, args, scope, ctx.mcpReq.signal)
  if (!now.ok) return now.result
  if ((await sha256Hex(now.text)) !== state.asked) {
    return refuseCall(scope, { outcome: 'tool_error', errorCode: 'confirmation_stale', outputJson: undefined },
      `What this ${tool.name} call would change is no longer what the user confirmed (the data changed meanwhile): now "${now.text}". Nothing was changed; call ${tool.name} again to ask again.`)
  }
  return invokeTool(tool, settings, args, scope, ctx.mcpReq.signal, now.text)
}

async function ask({ tool, settings, args, scope, ctx, era, capabilities }: ConfirmedCall, confirm: Confirmations): Promise<CallToolResult | InputRequiredResult> {
  // a call that would fail anyway fails as it would, whoever could be asked
  const change = await describeChange(tool, settings, args, scope, ctx.mcpReq.signal)
  if (!change.ok) return change.result
  if (!canElicitForm(capabilities)) {
    return refuseCall(scope, { outcome: 'denied', errorCode: 'confirmation_unsupported', outputJson: undefined },
      `${tool.name} needs the user's confirmation for this call ("${change.text}"), and this client cannot ask its user: it did not declare the elicitation capability (form mode). Nothing was changed. Use a client that supports elicitation.`)
  }
  const expiresAt = Math.floor(Date.now() / 1000) + confirm.ttlSeconds
  const requestState = await confirm.codec.mint({
    sub: scope.principal.sub,
    tool: tool.name,
    args: await sha256Hex(canonicalJson(args)),
    asked: await sha256Hex(change.text),
    nonce: crypto.randomUUID(),
    expiresAt,
  })
  const report = { outcome: 'confirmation_requested', errorCode: undefined, outputJson: JSON.stringify({ question: change.text, expiresAt }) } as const
  // 2026-07-28: this answer ends the request; 2025-era: round 2 follows in the same request
  if (era === 'modern') await scope.call?.finish(report)
  else await scope.call?.round(report)
  return inputRequired({
    inputRequests: { [CONFIRM_KEY]: inputRequired.elicit({ message: change.text, requestedSchema: REQUESTED_SCHEMA }) },
    requestState,
  })
}
