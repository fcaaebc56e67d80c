// One McpServer per request, built for one principal: only the tools the
// policy lets this caller use are registered, so tools/list shows exactly
// those and a call to any other is "unknown tool" at the SDK level (the
// authorize middleware has already answered 403 for known tools). The same
// filter decides the resources it sees (resources.ts).
import { CLIENT_CAPABILITIES_META_KEY, McpServer, type ClientCapabilities, type ServerContext } from '@modelcontextprotocol/server'
import { CfWorkerJsonSchemaValidator } from '@modelcontextprotocol/server/validators/cf-worker'
import { POLICY } from '../policy/policy.ts'
import { policyVersion } from '../policy/policy-version.ts'
import { TOOLS } from '../tools/index.ts'
import { needsConfirmation } from '../policy/confirm.ts'
import { confirmedCall } from './confirm.ts'
import { invokeTool } from './invoke.ts'
import { registerResources } from './resources.ts'
import type { Era, RequestScope } from './scope.ts'

/** The client capabilities a 2026-07-28 request declares in its `_meta` envelope. */
export function capabilitiesOf(ctx: ServerContext): ClientCapabilities | undefined {
  const declared: unknown = ctx.mcpReq.envelope?.[CLIENT_CAPABILITIES_META_KEY as keyof typeof ctx.mcpReq.envelope]
  return typeof declared === 'object' && declared !== null ? (declared as ClientCapabilities) : undefined
}

/** What a development entry adds to every server (src/conformance/entry.ts); a deployed Worker has none. */
interface ServerExtension {
  /** more tools, resources, prompts */
  register(server: McpServer): void
  /** `ServerOptions.requestState.verify`: must resolve undefined for the states it does not own */
  verifyRequestState?: (state: string, ctx: ServerContext) => Promise<unknown>
  /** 2026-07-28 answers become SSE streams when a handler sends a notification before its result */
  streamNotifications?: boolean
}
let extension: ServerExtension | undefined

export function extendServers(added: ServerExtension): void {
  extension = added
}

export const serverExtension = (): ServerExtension | undefined => extension

export const SERVER_INFO = { name: 'mcp-bastion', version: '0.1.0' } as const

// Built once per isolate and shared by every per-request server.
const validator = new CfWorkerJsonSchemaValidator()

const INSTRUCTIONS =
  'Tools over the company data: customers, orders, products, support tickets. ' +
  'You only see the tools your token allows. Ids look like cus_001, ord_0001, prd_001.'

/**
 * `era`: how the request was served. `legacyCapabilities`: what a 2025-era
 * client declared at initialize (mcp/elicitation.ts); a 2026-07-28 request
 * carries its own in the `_meta` envelope. `roundTimeoutMs`: how long the
 * SDK's 2025-era shim waits for an answer to a question.
 */
export async function buildServer(scope: RequestScope, era: Era, legacyCapabilities?: ClientCapabilities, roundTimeoutMs?: number): Promise<McpServer> {
  const version = await policyVersion()
  const server = new McpServer(SERVER_INFO, {
    capabilities: { tools: { listChanged: false }, resources: { listChanged: false } },
    instructions: INSTRUCTIONS,
    jsonSchemaValidator: validator,
    // The tool and resource lists depend on the caller's token: never share a cached copy.
    cacheHints: { 'tools/list': { cacheScope: 'private', ttlMs: 0 }, 'resources/list': { cacheScope: 'private', ttlMs: 0 } },
    ...(roundTimeoutMs === undefined ? {} : { inputRequired: { roundTimeoutMs } }),
    ...(extension?.verifyRequestState ? { requestState: { verify: extension.verifyRequestState } } : {}),
  })
  for (const tool of TOOLS) {
    const settings = POLICY.tools.get(tool.name)
    if (!settings) throw new Error(`tool ${tool.name} has no policy entry`)
    if (!scope.principal.scopes.has(settings.scope)) continue
    server.registerTool(
      tool.name,
      {
        title: tool.title,
        description: tool.description,
        inputSchema: tool.input,
        outputSchema: tool.output,
        annotations: { title: tool.title, ...tool.annotations },
      },
      (args: unknown, ctx: ServerContext) =>
        needsConfirmation(settings.confirm, args)
          ? confirmedCall({ tool, settings, args, scope, ctx, era, capabilities: era === 'modern' ? capabilitiesOf(ctx) : legacyCapabilities })
          : invokeTool(tool, settings, args, scope, ctx.mcpReq.signal),
    )
  }
  registerResources(server, scope, version)
  extension?.register(server)
  return server
}
