// The Worker with the conformance suite's fixtures (fixtures.ts): the entry
// of `npm run dev -- --conformance`, never of `wrangler deploy` (wrangler.toml
// `main` is src/index.ts). Everything else is the deployed Worker unchanged.
import worker from '../index.ts'
import { extendServers } from '../mcp/server.ts'
import { registerFixtures } from './fixtures.ts'
import { verifyFixtureRequestState } from './input-required.ts'

// progress notifications stream (tools-call-with-progress); a tampered fixture state is a -32602 error
extendServers({ register: registerFixtures, verifyRequestState: verifyFixtureRequestState, streamNotifications: true })

export { LimiterObject, DpopReplay, AuditSequencer, ElicitationRendezvous } from '../index.ts'
export default worker
