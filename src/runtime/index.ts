/** Isolation backends behind one interface. */
export type * from './backend.js'
export { createRuncBackend, type RuncBackendOptions } from './runc/index.js'
export { buildGuest, createQemuBackend, probeAccel, type GuestArtifacts, type QemuAccel, type QemuBackendOptions } from './qemu/index.js'
