/** The agent of one host: it runs sandboxes and answers the server. */
export type * from './agent-api.js'
export { createLocalAgent, type LocalAgentOptions } from './local-agent.js'
export type * from './snapshot-api.js'
export type * from './golden-api.js'
export type * from './image-api.js'
export { runAgent, type RemoteAgentOptions, type RunningAgent } from './remote-agent.js'
export * from './link-contract.js'
export * from './link-replies.js'
