/** What every part of Sandstorm shares: errors, ids, signals, logging and the wire schema. */
export * from './errors.js'
export * from './ids.js'
export * from './abort.js'
export * from './logger.js'
export * from './api.js'
export * from './snapshot-api.js'
export * from './golden-api.js'
export * from './network.js'
