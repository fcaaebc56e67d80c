// Content fixtures of the conformance suite (development builds only, see
// fixtures.ts): tools returning each content type, static and templated
// resources, prompts with arguments / embedded resources / images, and an
// argument completion. Names and texts are the ones the suite's scenarios
// (tools-call-*, resources-read-*, resources-templates-read, prompts-get-*,
// completion-complete) ask for.
import { completable, ResourceTemplate, type McpServer, type ServerContext } from '@modelcontextprotocol/server'
import * as z from 'zod'

/** A 1x1 red PNG. */
const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=='
/** A WAV header with no samples (8 kHz, 8-bit mono). */
const WAV_EMPTY = 'UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA='

/** A fixture tool's description and (empty) input schema. */
export const fixture = (description: string) => ({ description: `Conformance fixture: ${description}`, inputSchema: z.object({}) })
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export function registerContentFixtures(server: McpServer): void {
  server.registerTool('test_simple_text', fixture('returns one text block'), () => ({
    content: [{ type: 'text', text: 'This is a simple text response for testing.' }],
  }))
  server.registerTool('test_image_content', fixture('returns one image block'), () => ({
    content: [{ type: 'image', data: PNG_1X1, mimeType: 'image/png' }],
  }))
  server.registerTool('test_audio_content', fixture('returns one audio block'), () => ({
    content: [{ type: 'audio', data: WAV_EMPTY, mimeType: 'audio/wav' }],
  }))
  server.registerTool('test_embedded_resource', fixture('returns one embedded resource'), () => ({
    content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }],
  }))
  server.registerTool('test_multiple_content_types', fixture('returns text, image and resource blocks'), () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG_1X1, mimeType: 'image/png' },
      { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) } },
    ],
  }))
  server.registerTool('test_error_handling', fixture('always reports a tool error'), () => ({
    isError: true,
    content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }],
  }))
  server.registerTool('test_tool_with_progress', fixture('reports progress 0, 50, 100 of 100'), async (_args, ctx: ServerContext) => {
    const token = ctx.mcpReq._meta?.progressToken
    for (const progress of [0, 50, 100]) {
      if (token !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress, total: 100 } })
      if (progress < 100) await sleep(50)
    }
    return { content: [{ type: 'text', text: 'Progress test completed' }] }
  })

  server.registerResource(
    'test-static-text',
    'test://static-text',
    { description: 'Conformance fixture: a static text resource', mimeType: 'text/plain' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] }),
  )
  server.registerResource(
    'test-static-binary',
    'test://static-binary',
    { description: 'Conformance fixture: a static binary resource', mimeType: 'image/png' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_1X1 }] }),
  )
  server.registerResource(
    'test-template',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'Conformance fixture: a templated resource', mimeType: 'application/json' },
    (uri, variables) => {
      const id = String(variables['id'])
      return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] }
    },
  )

  server.registerPrompt(
    'test_prompt_with_arguments',
    {
      description: 'Conformance fixture: a prompt with two arguments (arg1 completes)',
      argsSchema: z.object({
        arg1: completable(z.string().describe('First test argument'), (value) => ['paris', 'park', 'party', 'test', 'testValue1'].filter((v) => v.startsWith(value))),
        arg2: z.string().describe('Second test argument'),
      }),
    },
    ({ arg1, arg2 }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
    }),
  )
  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    {
      description: 'Conformance fixture: a prompt embedding a resource',
      argsSchema: z.object({ resourceUri: z.string().describe('URI of the resource to embed') }),
    },
    ({ resourceUri }) => ({
      messages: [
        { role: 'user', content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  )
  server.registerPrompt('test_prompt_with_image', { description: 'Conformance fixture: a prompt with an image' }, () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG_1X1, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }))
}
