/** What every part of Sandstorm shares: errors, ids, signals, logging and the wire schema. */
export * from './errors.js'
// The HTTP API's wire types live in the SDK package; re-exported so that server code keeps one import.
export * from '@sandstorm/sdk/wire'
// The byte-stream splice of tunnels, shared with the SDK's port forwarding.
export { splice } from '@sandstorm/sdk/node'
export * from './ids.js'
export * from './abort.js'
export * from './logger.js'
export * from './build-step.js'
export * from './network.js'
export * from './data-dir.js'
export * from './format-bytes.js'
export * from './process-alive.js'
export * from './child-hold.js'
export * from './agent-defaults.js'
export * from './work-queue.js'
export * from './output-bounds.js'
export * from './run-process.js'
