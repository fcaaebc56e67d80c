// The MCP conformance suite's diagnostic fixtures, for development builds
// only (src/conformance/entry.ts; `npm run dev -- --conformance`): the tools
// and prompt the suite's 2026-07-28 scenarios call to observe protocol
// behaviour, with none of the business tools' data or effects. `wrangler
// deploy` bundles src/index.ts, which never imports this module
// (test/e2e/bundle.test.ts checks the output).
//
//   test_missing_capability     asks the client for a sampling completion:
//                               a client without `sampling` gets the SDK's
//                               -32021 (HTTP 400) naming it
//   test_streaming_elicitation  asks for a name through input_required
//                               (never a request on the response stream)
//   test_logging_tool           answers without logging (no logLevel set)
//   test_simple_prompt          a prompt, so prompts/list is served
//   content.ts                  the content-type tools, test:// resources,
//                               the prompts with arguments/resource/image and
//                               the completion the suite asks for
//   input-required.ts           the input_required (multi-round-trip) tools
//                               and prompt, with an HMAC-sealed requestState
import { acceptedContent, inputRequired, type McpServer } from '@modelcontextprotocol/server'
import { fixture, registerContentFixtures } from './content.ts'
import { registerInputRequiredFixtures } from './input-required.ts'

const NAME = { type: 'object' as const, properties: { name: { type: 'string' as const, description: 'your name' } }, required: ['name'] }

export function registerFixtures(server: McpServer): void {
  server.server.registerCapabilities({ prompts: { listChanged: false }, completions: {} })

  server.registerTool('test_missing_capability', fixture('needs the client sampling capability'), () =>
    inputRequired({ inputRequests: { sample: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Say hello' } }], maxTokens: 16 }) } }),
  )
  server.registerTool('test_streaming_elicitation', fixture('asks for a name with input_required'), (_args, ctx) => {
    const answer = acceptedContent<{ name?: unknown }>(ctx.mcpReq.inputResponses, 'name')
    if (typeof answer?.name === 'string') return { content: [{ type: 'text', text: `Hello, ${answer.name}` }] }
    return inputRequired({ inputRequests: { name: inputRequired.elicit({ message: 'What is your name?', requestedSchema: NAME }) } })
  })
  server.registerTool('test_logging_tool', fixture('answers without logging when no logLevel is set'), () => ({
    content: [{ type: 'text', text: 'done, without a log message' }],
  }))
  server.registerPrompt('test_simple_prompt', { description: 'Conformance fixture: a prompt without arguments' }, () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }))
  registerContentFixtures(server)
  registerInputRequiredFixtures(server)
}
