/** The QEMU microVM backend: `microvm` guests with their own kernel, driven through QMP and the guest agent. */
export { createQemuBackend, guestCacheKey, probeAccel, type QemuAccel, type QemuBackend, type QemuBackendOptions } from './backend.js'
export { buildGuest, guestArtifacts, type GuestArtifacts, type GuestBuildOptions } from './guest-build.js'
export { hostTscKHz } from './guest-clock.js'
export { noGuestTerminals } from './guest-process.js'
export { vmUidRange } from './vm-jail.js'
