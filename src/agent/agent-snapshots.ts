/**
 * Snapshots and golden templates of every runtime behind one API: a sandbox whose backend saves
 * whole machines (qemu) snapshots, restores and promotes through the machine store, the others
 * through the layer store.
 */
import { SandstormError } from '../shared/index.js'
import type { RuntimeBackend } from '../runtime/index.js'
import { treeSizeBytes, type TemplateStore } from '../templates/index.js'
import type { AgentApi } from './agent-api.js'
import type { AgentGoldenApi } from './golden-api.js'
import { startOf } from './golden-templates.js'
import { publicMachineSnapshot, type MachineSnapshots } from './machine-snapshots.js'
import type { SandboxLayers } from './sandbox-layers.js'
import type { LiveSandbox } from './sandbox-processes.js'
import type { AgentSnapshotApi } from './snapshot-api.js'
import { runStartCommand } from './start-command.js'

/** What the snapshot router needs of the agent. */
export interface AgentSnapshotsOptions {
  sandboxes: ReadonlyMap<string, LiveSandbox>
  /** The live sandbox `id`; not_found when there is none. */
  get(id: string): LiveSandbox
  /** The backend that runs sandbox `id`. */
  backendOf(id: string): RuntimeBackend
  /** Runtimes whose sandboxes are saved as whole machines. */
  machineRuntimes: ReadonlySet<string>
  machines: MachineSnapshots
  templates: TemplateStore
  layerSnapshots: ReturnType<SandboxLayers['snapshots']>
  layerGolden: AgentGoldenApi
  /** The agent itself: a machine's restore is a destroy and a create, and a restore runs the template's start command. */
  agent(): AgentApi
}

/** The agent's snapshots and golden templates, over machines and layers. */
export function createAgentSnapshots(options: AgentSnapshotsOptions): { snapshots: AgentSnapshotApi; golden: AgentGoldenApi } {
  const { sandboxes, get, backendOf, machineRuntimes, machines, templates, layerSnapshots, layerGolden } = options
  /** Who stands on a machine snapshot among the live sandboxes (clones of it). */
  const clonesOf = (snapshotId: string): string[] =>
    [...sandboxes.values()].filter((s) => s.record.machineFrom === snapshotId).map((s) => `sandbox ${s.record.id}`)

  const allSnapshots: AgentSnapshotApi = {
    async take(sandboxId, req, call) {
      const sandbox = get(sandboxId)
      if (!machineRuntimes.has(sandbox.record.runtime)) return layerSnapshots.take(sandboxId, req, call)
      const template = await templates.resolve(sandbox.record.template).catch(() => undefined)
      const rootfs = sandbox.record.rootfs ?? template?.rootfs
      if (!rootfs || !sandbox.record.config) throw new SandstormError('failed_precondition', `sandbox "${sandboxId}" has no recorded config: expected one created by this version of the agent`)
      const saved = await machines.take(
        backendOf(sandboxId),
        { sandboxId, template: sandbox.record.template, runtime: sandbox.record.runtime, rootfs, ...sandbox.record.config, parentId: sandbox.record.machineFrom ?? null },
        req.label ?? '',
        call,
      )
      return publicMachineSnapshot(saved)
    },
    async get(id, call) {
      const found = await machines.find(id)
      return found ? publicMachineSnapshot(found) : layerSnapshots.get(id, call)
    },
    list: async (call) => [...(await layerSnapshots.list(call)), ...(await machines.list()).map(publicMachineSnapshot)],
    async remove(id, call) {
      if (await machines.find(id)) return machines.remove(id, clonesOf)
      return layerSnapshots.remove(id, call)
    },
    async restore(sandboxId, req, call) {
      const sandbox = get(sandboxId)
      if (machineRuntimes.has(sandbox.record.runtime)) {
        // A machine comes back whole from its snapshot, on a fresh slot with the same policy.
        const egress = sandbox.record.network?.egress
        await options.agent().destroy(sandboxId)
        return options.agent().create({ ...req, id: sandboxId, template: sandbox.record.template, network: egress ? { mode: 'veth', egress } : { mode: 'none' } }, call)
      }
      // An image template's Env is under the restore's, as under a create's (createOver).
      const snapshotTemplate = (await layerSnapshots.get(req.snapshotId, call)).template
      const resolved = await templates.resolve(snapshotTemplate).catch(() => undefined)
      const image = resolved?.info.config
      const restored = await layerSnapshots.restore(sandboxId, image ? { ...req, env: { ...image.env, ...req.env } } : req, call)
      // In place, the commands that the restore ended keep their records (and results: a late
      // wait hears why); a new instance's processes start again from pid 1, so the old records go.
      if (!restored.inPlace) sandbox.processes.clear()
      sandbox.users.clear()
      // So the template's start command runs again; a failure is reported, the restored sandbox kept.
      // The template was read once already where the snapshot is of the sandbox's own (the usual case).
      const own = sandbox.record.template === snapshotTemplate ? resolved : await templates.resolve(sandbox.record.template).catch(() => undefined)
      const start = own?.info.start
      if (start) await runStartCommand(options.agent(), sandboxId, { name: sandbox.record.template, start }, call)
      return restored
    },
  }
  const golden: AgentGoldenApi = {
    ...layerGolden,
    async promote(name, snapshotId, call, settings = {}) {
      const saved = await machines.find(snapshotId)
      if (!saved) return layerGolden.promote(name, snapshotId, call, settings)
      const start = settings.start ?? (await startOf(templates, saved.template))
      // The version boots its base's root cold; a create of its config clones the saved machine instead.
      return templates.promote(name, {
        rootfs: saved.rootfs,
        defaults: { memoryMiB: saved.memoryMiB, cpus: saved.cpus, ...(saved.diskMiB > 0 ? { diskMiB: saved.diskMiB } : {}) },
        baseTemplate: saved.template,
        snapshotId,
        sizeBytes: await treeSizeBytes(saved.image.dir),
        description: `${saved.template} with ${saved.runtime} machine ${snapshotId}${saved.label ? ` (${saved.label})` : ''}`,
        ...(start ? { start } : {}),
      })
    },
  }
  return { snapshots: allSnapshots, golden }
}
