/** Isolation backends behind one interface. */
export type * from './backend.js'
export { createRuncBackend, runcHostHelpers, type RuncBackendOptions } from './runc/index.js'
export { buildGuest, createQemuBackend, guestArtifacts, guestCacheKey, hostTscKHz, noGuestTerminals, probeAccel, vmUidRange, type GuestArtifacts, type QemuAccel, type QemuBackend, type QemuBackendOptions } from './qemu/index.js'
export { checkTerminalSize, maxTerminalCells } from './terminal-size.js'
