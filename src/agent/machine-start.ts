/**
 * How a create starts: which runtime, and on a machine runtime whether it is a clone of a saved
 * machine (a fork, a restore, or a golden template whose config matches) or a cold boot.
 */
import type { MachineImage, RootfsSpec } from '../runtime/index.js'
import { SandstormError } from '../shared/index.js'
import type { AgentCreateRequest } from './agent-api.js'
import type { MachineSnapshot, MachineSnapshots } from './machine-snapshots.js'

/** What a create should do. */
export interface StartPlan {
  runtime: string
  /** Clone this saved machine instead of booting. */
  machine?: MachineImage
  /** The machine snapshot the sandbox stands on (its parent), when it is a clone. */
  machineFrom?: string
  /** Root to boot from when the template's own does not fit (a machine golden template's base). */
  rootfs?: Pick<RootfsSpec, 'lowerDirs' | 'readonlyBinds'>
  /** Set for a create from a golden template: whether it started from the saved machine. */
  start?: 'golden' | 'cold'
  /** Why a golden template's create booted cold. */
  startReason?: string
}

/** What planStart needs to know of the agent. */
export interface StartContext {
  machines: MachineSnapshots
  /** Runtimes this host offers whose sandboxes are machines (saveMachine). */
  machineRuntimes: Set<string>
  defaultRuntime: string
}

const configOf = (m: { memoryMiB: number; cpus: number; diskMiB: number }) => `${m.memoryMiB} MiB, ${m.cpus} cpus and a ${m.diskMiB} MiB disk`
/** A saved machine's disk is its clones' disk; one saved before quotas (0) takes any. */
const sameConfig = (req: AgentCreateRequest, m: MachineSnapshot) => req.memoryMiB === m.memoryMiB && req.cpus === m.cpus && (m.diskMiB === 0 || req.diskMiB === m.diskMiB)

/** Decides how `req` starts on a template whose current version is `template`. */
export async function planStart(req: AgentCreateRequest, template: { info: { name: string; snapshotId?: string }; rootfs: RootfsSpec }, ctx: StartContext): Promise<StartPlan> {
  const fromSnapshot = req.snapshotId ? await ctx.machines.find(req.snapshotId) : undefined
  const golden = !req.snapshotId && template.info.snapshotId ? await ctx.machines.find(template.info.snapshotId) : undefined
  const saved: MachineSnapshot | undefined = fromSnapshot ?? golden
  const runtime = req.runtime ?? saved?.runtime ?? ctx.defaultRuntime
  if (saved && runtime !== saved.runtime) {
    const what = fromSnapshot ? `snapshot "${saved.id}"` : `template "${template.info.name}"`
    throw new SandstormError('failed_precondition', `${what} is a saved ${saved.runtime} machine: expected runtime "${saved.runtime}", got "${runtime}"`)
  }
  if (!ctx.machineRuntimes.has(runtime)) return { runtime }

  if (fromSnapshot) {
    // A fork or a restore resumes the machine with its processes; another config cannot hold its memory.
    if (!sameConfig(req, fromSnapshot)) {
      throw new SandstormError('failed_precondition', `snapshot "${fromSnapshot.id}" is a machine of ${configOf(fromSnapshot)}: expected a sandbox of that config, got ${configOf(req)}`)
    }
    return { runtime, machine: fromSnapshot.image, machineFrom: fromSnapshot.id, rootfs: fromSnapshot.rootfs }
  }
  if (req.snapshotId) {
    throw new SandstormError('failed_precondition', `snapshot "${req.snapshotId}" holds filesystem layers (a runc sandbox's): expected runtime "runc" to start from it, got "${runtime}"`)
  }
  if (golden) {
    if (sameConfig(req, golden)) {
      return { runtime, machine: golden.image, machineFrom: golden.id, rootfs: golden.rootfs, start: 'golden' }
    }
    return {
      runtime,
      rootfs: golden.rootfs,
      start: 'cold',
      startReason: `the golden machine of template "${template.info.name}" was saved with ${configOf(golden)}, the create asked for ${configOf(req)}: booted template "${golden.template}" cold, without the golden machine's memory or disk`,
    }
  }
  // A template of image layers boots as a guest of its merged layers; a golden template of a runc sandbox's layers does not.
  if (template.info.snapshotId && template.rootfs.lowerDirs.length !== 1) {
    throw new SandstormError('failed_precondition', `template "${template.info.name}" is a golden template of runc layers: a ${runtime} sandbox boots one template root; expected a base template or one built with --runtime ${runtime}`)
  }
  return { runtime }
}
