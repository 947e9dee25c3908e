/** The runc backend: OCI containers with namespaces, cgroup limits, seccomp and an overlay root. */
export { createRuncBackend, type RuncBackendOptions } from './backend.js'
export { hostHelpers as runcHostHelpers } from './layout.js'
