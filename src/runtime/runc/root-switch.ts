/** A sandbox's root switched in place, by native/root-switch.c: the heart of a restore without a new container. */
import { SandstormError } from '../../shared/index.js'
import { createResidentShell, shellQuote } from '../../shared/resident-shell.js'
import type { RootfsSpec } from '../backend.js'
import { hostHelpers } from './layout.js'
import type { InitProcess } from './runc-cli.js'

/** The helper refused before it changed anything (its exit status 3). */
const refusedStatus = 3

// Started from a resident shell: a spawn from the agent forks the agent (tens of ms on a busy host).
const shell = createResidentShell('root switch')

/**
 * Switches the root of the sandbox whose init is `init` to `rootfs` (its upper and work dirs made by
 * the layer store), inside the sandbox's own mount namespace; every process but the init must be
 * gone (the init's reset). Throws `failed_precondition` when the helper refused with nothing
 * changed, and `internal` when it failed part way (the sandbox must then be replaced).
 */
export async function switchRoot(init: InitProcess, rootfs: RootfsSpec): Promise<void> {
  if (!rootfs.upperDir || !rootfs.workDir) throw new SandstormError('internal', 'a root switch needs the writable layer made first (upperDir, workDir)')
  const args = [String(init.pid), String(init.startTicks), rootfs.allowSetuid ? '1' : '0', rootfs.upperDir, rootfs.workDir, ...rootfs.lowerDirs]
  const { code, output } = await shell.run([hostHelpers.rootSwitch, ...args].map(shellQuote).join(' '))
  if (code === 0) return
  const why = output.trim().split('\n').pop() || `exit status ${code}`
  if (code === refusedStatus) throw new SandstormError('failed_precondition', `the sandbox's root cannot be switched in place: ${why}`)
  throw new SandstormError('internal', `switching the sandbox's root failed part way: ${why}`)
}
