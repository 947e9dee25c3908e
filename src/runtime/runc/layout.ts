import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

/** Where the runc backend keeps things on the host. */
export interface RuncLayout {
  /** runc's own state (`runc --root`). */
  stateRoot: string
  /** Parent of every sandbox's directory; mode 0700, since sandboxes write below it. */
  sandboxesDir: string
}

/** Paths of one sandbox on the host. The sandbox directory is also its OCI bundle. */
export function sandboxPaths(layout: RuncLayout, id: string) {
  const dir = join(layout.sandboxesDir, id)
  return {
    dir,
    config: join(dir, 'config.json'),
    rootfs: join(dir, 'rootfs'),
    upper: join(dir, 'upper'),
    work: join(dir, 'work'),
  }
}

/** Paths inside the sandbox where Sandstorm's own read-only helpers are bound. */
export const inSandbox = {
  dir: '/.sandstorm',
  init: '/.sandstorm/init',
  busybox: '/.sandstorm/busybox',
} as const

/** Host binaries of the runc backend, all static. */
export const hostHelpers = {
  /** PID 1 of every sandbox, bound in read-only; built from native/sandbox-init.c by `npm run build`. */
  init: fileURLToPath(new URL('../../../native/sandbox-init', import.meta.url)),
  /** Bound into every sandbox read-only, for the file scripts. */
  busybox: '/bin/busybox',
  /** Run on the host only: compiles the sandboxes' seccomp profile (native/seccomp-bpf.c). */
  seccompBpf: fileURLToPath(new URL('../../../native/seccomp-bpf', import.meta.url)),
  /** Run on the host only: hands a restarted agent's channel to a sandbox's init (native/init-attach.c). */
  initAttach: fileURLToPath(new URL('../../../native/init-attach', import.meta.url)),
  /** Run on the host only: switches a running sandbox's root to a new overlay, for a restore in place (native/root-switch.c). */
  rootSwitch: fileURLToPath(new URL('../../../native/root-switch', import.meta.url)),
  /** Run on the host only: starts each `runc run`, so that the agent does not fork for it (native/runc-launcher.c). */
  runcLauncher: fileURLToPath(new URL('../../../native/runc-launcher', import.meta.url)),
} as const

/** The cgroup (v1 cgroupfs path) of a sandbox; runc creates it under every controller. */
export function cgroupPath(id: string): string {
  return `/sandstorm/${id}`
}
