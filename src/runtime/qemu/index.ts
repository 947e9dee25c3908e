/** The QEMU microVM backend: `microvm` guests with their own kernel, driven through QMP and the guest agent. */
export { createQemuBackend, probeAccel, type QemuAccel, type QemuBackendOptions } from './backend.js'
export { buildGuest, guestArtifacts, type GuestArtifacts, type GuestBuildOptions } from './guest-build.js'
