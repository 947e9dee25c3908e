/**
 * What crosses Sandstorm's HTTP API, defined once: the zod schemas the server validates requests
 * with, and the types of its answers. `import { SandboxInfo } from '@sandstorm/sdk/wire'`.
 */
export * from './error-code.js'
export * from './api-limits.js'
export * from './api.js'
export * from './network-limits.js'
export * from './network.js'
export * from './metrics-api.js'
export * from './list-limits.js'
export * from './list-api.js'
export * from './snapshot-api.js'
export * from './golden-api.js'
export * from './template-start.js'
export * from './image-api.js'
export * from './fleet-api.js'
export * from './pool-limits.js'
export * from './pool-api.js'
export * from './terminal-protocol.js'
export * from './terminal.js'
