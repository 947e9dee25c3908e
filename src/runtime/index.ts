/** Isolation backends behind one interface. */
export type * from './backend.js'
export { createRuncBackend, type RuncBackendOptions } from './runc/index.js'
