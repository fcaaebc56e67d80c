// Multi-round-trip (input_required, SEP-2322) fixtures of the conformance
// suite (development builds only, see fixtures.ts). Tool, prompt and
// inputRequests key names are the ones the suite's input-required-result-*
// scenarios ask for.
//
// requestState is sealed with the SDK's HMAC codec under CONFORMANCE_STATE_KEY,
// a fixed key that exists for the conformance suite only: it is public in
// this repository and guards nothing. verifyFixtureRequestState is the
// server-wide ServerOptions.requestState.verify hook entry.ts installs: a
// tampered fixture state is a wire-level -32602 before any handler runs.
import {
  acceptedContent,
  createRequestStateCodec,
  inputRequired,
  inputResponse,
  ProtocolError,
  ProtocolErrorCode,
  type InputRequest,
  type McpServer,
  type ServerContext,
} from '@modelcontextprotocol/server'
import { capabilitiesOf } from '../mcp/server.ts'
import { fixture } from './content.ts'

/** Development-only HMAC key for the fixtures' requestState. Conformance use only; never a secret. */
const CONFORMANCE_STATE_KEY = 'mcp-bastion conformance fixtures: not a secret, development only'

interface FixtureState {
  tool: string
  round: number
  name?: string
}

const codec = createRequestStateCodec<FixtureState>({ key: CONFORMANCE_STATE_KEY, ttlSeconds: 600 })

/** Fixture states carry this prefix, so a verify hook can tell them from the business tools' confirmation states. */
const PREFIX = 'fx.'

const mint = async (state: FixtureState): Promise<string> => PREFIX + (await codec.mint(state))

const invalidState = () => new ProtocolError(ProtocolErrorCode.InvalidParams, 'Invalid or expired requestState', { reason: 'invalid_request_state' })

/**
 * A `ServerOptions.requestState.verify` hook for fixture mode: verifies (and
 * decodes) fixture states, throwing on any that fail, so the seam answers a
 * wire-level -32602; resolves `undefined` for every other state (the
 * business tools' confirmation states), leaving those to the tools' own
 * checks. entry.ts hands it to every server (src/mcp/server.ts extendServers).
 */
export async function verifyFixtureRequestState(state: string, ctx: ServerContext): Promise<FixtureState | undefined> {
  if (!state.startsWith(PREFIX)) return undefined
  return codec.verify(state.slice(PREFIX.length), ctx)
}

/** The echoed requestState, verified and decoded; `undefined` when the round carried none. Tampered or foreign state throws. */
async function verifiedState(ctx: ServerContext, tool: string): Promise<FixtureState | undefined> {
  const raw = ctx.mcpReq.requestState<unknown>()
  if (raw === undefined) return undefined
  let state: FixtureState | undefined
  if (typeof raw === 'object' && raw !== null) {
    state = raw as FixtureState // already verified and decoded by verifyFixtureRequestState
  } else {
    try {
      state = typeof raw === 'string' ? await verifyFixtureRequestState(raw, ctx) : undefined
    } catch {
      throw invalidState()
    }
  }
  if (state?.tool !== tool) throw invalidState()
  return state
}


const schema = <T extends 'string' | 'boolean'>(property: string, type: T) => ({
  type: 'object' as const,
  properties: { [property]: { type } },
  required: [property],
})

const text = (t: string) => ({ content: [{ type: 'text' as const, text: t }] })
const NAME_REQUEST = () => inputRequired.elicit({ message: 'What is your name?', requestedSchema: schema('name', 'string') })
const samplingText = (ctx: ServerContext, key: string): string | undefined => {
  const view = inputResponse(ctx.mcpReq.inputResponses, key)
  if (view.kind !== 'sampling') return undefined
  const content = view.result.content
  const block = Array.isArray(content) ? content[0] : content
  return block && block.type === 'text' ? block.text : ''
}

export function registerInputRequiredFixtures(server: McpServer): void {
  server.registerTool('test_input_required_result_elicitation', fixture('asks for a name (user_name) with input_required'), (_args, ctx) => {
    const answer = acceptedContent<{ name?: unknown }>(ctx.mcpReq.inputResponses, 'user_name')
    if (typeof answer?.name === 'string') return text(`Hello, ${answer.name}!`)
    return inputRequired({ inputRequests: { user_name: NAME_REQUEST() } })
  })

  server.registerTool('test_input_required_result_sampling', fixture('asks the client model a question (capital_question)'), (_args, ctx) => {
    const answer = samplingText(ctx, 'capital_question')
    if (answer !== undefined) return text(`Sampling response: ${answer}`)
    return inputRequired({
      inputRequests: {
        capital_question: inputRequired.createMessage({
          messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }],
          maxTokens: 100,
        }),
      },
    })
  })

  server.registerTool('test_input_required_result_list_roots', fixture('asks for the client roots (client_roots)'), (_args, ctx) => {
    const view = inputResponse(ctx.mcpReq.inputResponses, 'client_roots')
    if (view.kind === 'roots') return text(`Client roots: ${view.roots.map((r) => r.uri).join(', ') || '(none)'}`)
    return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } })
  })

  const TOOL_STATE = 'test_input_required_result_request_state'
  server.registerTool(TOOL_STATE, fixture('asks for a confirmation with a signed requestState'), async (_args, ctx) => {
    const state = await verifiedState(ctx, TOOL_STATE)
    const answer = acceptedContent<{ ok?: unknown }>(ctx.mcpReq.inputResponses, 'confirm')
    if (state !== undefined && answer !== undefined) return text(`state-ok: confirmed=${String(answer.ok)}`)
    return inputRequired({
      inputRequests: { confirm: inputRequired.elicit({ message: 'Please confirm', requestedSchema: schema('ok', 'boolean') }) },
      requestState: await mint({ tool: TOOL_STATE, round: 1 }),
    })
  })

  const TOOL_MULTI = 'test_input_required_result_multiple_inputs'
  server.registerTool(TOOL_MULTI, fixture('asks for a name, a sampling completion and the roots at once'), async (_args, ctx) => {
    const state = await verifiedState(ctx, TOOL_MULTI)
    const name = acceptedContent<{ name?: unknown }>(ctx.mcpReq.inputResponses, 'user_name')
    const greeting = samplingText(ctx, 'greeting')
    const roots = inputResponse(ctx.mcpReq.inputResponses, 'client_roots')
    if (state !== undefined && typeof name?.name === 'string' && greeting !== undefined && roots.kind === 'roots') {
      return text(`${greeting} ${name.name}; roots: ${roots.roots.map((r) => r.uri).join(', ') || '(none)'}`)
    }
    return inputRequired({
      inputRequests: {
        user_name: NAME_REQUEST(),
        greeting: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }], maxTokens: 50 }),
        client_roots: inputRequired.listRoots(),
      },
      requestState: await mint({ tool: TOOL_MULTI, round: 1 }),
    })
  })

  const TOOL_ROUNDS = 'test_input_required_result_multi_round'
  server.registerTool(TOOL_ROUNDS, fixture('asks two questions in two rounds, carrying a signed requestState'), async (_args, ctx) => {
    const state = await verifiedState(ctx, TOOL_ROUNDS)
    if (state?.round === 2 && state.name !== undefined) {
      const color = acceptedContent<{ color?: unknown }>(ctx.mcpReq.inputResponses, 'step2')
      if (typeof color?.color === 'string') return text(`${state.name} likes ${color.color}`)
    }
    if (state?.round === 1 || state?.round === 2) {
      const name = state.name ?? acceptedContent<{ name?: unknown }>(ctx.mcpReq.inputResponses, 'step1')?.name
      if (typeof name === 'string') {
        return inputRequired({
          inputRequests: {
            step2: inputRequired.elicit({ message: 'Step 2: What is your favorite color?', requestedSchema: schema('color', 'string') }),
          },
          requestState: await mint({ tool: TOOL_ROUNDS, round: 2, name }),
        })
      }
    }
    return inputRequired({
      inputRequests: { step1: inputRequired.elicit({ message: 'Step 1: What is your name?', requestedSchema: schema('name', 'string') }) },
      requestState: await mint({ tool: TOOL_ROUNDS, round: 1 }),
    })
  })

  const TOOL_TAMPER = 'test_input_required_result_tampered_state'
  server.registerTool(TOOL_TAMPER, fixture('rejects a requestState that fails its HMAC check'), async (_args, ctx) => {
    const state = await verifiedState(ctx, TOOL_TAMPER)
    const answer = acceptedContent<{ ok?: unknown }>(ctx.mcpReq.inputResponses, 'confirm')
    if (state !== undefined && answer !== undefined) return text('state-ok')
    return inputRequired({
      inputRequests: { confirm: inputRequired.elicit({ message: 'Please confirm', requestedSchema: schema('ok', 'boolean') }) },
      requestState: await mint({ tool: TOOL_TAMPER, round: 1 }),
    })
  })

  server.registerTool('test_input_required_result_capabilities', fixture('asks only for what the client declared it supports'), (_args, ctx) => {
    const caps = capabilitiesOf(ctx) ?? {}
    const responses = ctx.mcpReq.inputResponses
    const requests: Record<string, InputRequest> = {}
    if (caps.sampling !== undefined && inputResponse(responses, 'sample').kind !== 'sampling') {
      requests['sample'] = inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Say hello' } }], maxTokens: 16 })
    }
    if (caps.elicitation !== undefined && acceptedContent(responses, 'user_name') === undefined) requests['user_name'] = NAME_REQUEST()
    if (caps.roots !== undefined && inputResponse(responses, 'client_roots').kind !== 'roots') requests['client_roots'] = inputRequired.listRoots()
    if (Object.keys(requests).length === 0) return text('Every input the client supports has been provided')
    return inputRequired({ inputRequests: requests })
  })

  server.registerPrompt(
    'test_input_required_result_prompt',
    { description: 'Conformance fixture: a prompt that asks for its context with input_required' },
    (ctx) => {
      const answer = acceptedContent<{ context?: unknown }>(ctx.mcpReq.inputResponses, 'user_context')
      if (typeof answer?.context === 'string') {
        return { messages: [{ role: 'user', content: { type: 'text', text: `Use this context: ${answer.context}` } }] }
      }
      return inputRequired({
        inputRequests: {
          user_context: inputRequired.elicit({ message: 'What context should the prompt use?', requestedSchema: schema('context', 'string') }),
        },
      })
    },
  )
}
