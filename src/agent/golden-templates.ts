/** Golden templates on the agent: the template store's versions over the layer store's snapshots. */
import { SandstormError, type TemplateStart } from '../shared/index.js'
import type { TemplateStore } from '../templates/index.js'
import { treeSizeBytes } from '../templates/index.js'
import type { AgentGoldenApi } from './golden-api.js'
import type { AgentSnapshotApi } from './snapshot-api.js'
import type { SandboxLayers } from './sandbox-layers.js'

/** Promote and rollback over one agent's stores. */
export function createGoldenTemplates(templates: TemplateStore, layers: SandboxLayers): AgentGoldenApi {
  return {
    async promote(name, snapshotId, _options, settings = {}) {
      const { snapshot, rootfs, layerDirs } = await layers.stackOf(snapshotId)
      const start = settings.start ?? (await startOf(templates, snapshot.template))
      let sizeBytes = 0
      for (const dir of layerDirs) sizeBytes += await treeSizeBytes(dir)
      return templates.promote(name, {
        rootfs,
        defaults: { memoryMiB: snapshot.memoryMiB, cpus: snapshot.cpus, ...(snapshot.diskMiB > 0 ? { diskMiB: snapshot.diskMiB } : {}) },
        baseTemplate: snapshot.template,
        snapshotId,
        sizeBytes,
        description: `${snapshot.template} with snapshot ${snapshotId}${snapshot.label ? ` (${snapshot.label})` : ''}`,
        ...(start ? { start } : {}),
      })
    },
    rollback: (name) => templates.rollback(name),
    standingOn: (snapshotId) => templates.standingOn(snapshotId),
  }
}

/** The start command of `template`'s current version, which a golden version made on it keeps. */
export async function startOf(templates: TemplateStore, template: string): Promise<TemplateStart | undefined> {
  return (await templates.resolve(template).catch(() => undefined))?.info.start
}

/** Snapshot operations that refuse to delete a snapshot a template version stands on. */
export function guardSnapshots(snapshots: AgentSnapshotApi, golden: AgentGoldenApi): AgentSnapshotApi {
  return {
    ...snapshots,
    async remove(id, options) {
      const on = await golden.standingOn(id, options)
      if (on.length > 0) {
        throw new SandstormError('failed_precondition', `snapshot "${id}" cannot be deleted: expected nothing to stand on it, but template ${on.join(', ')} ${on.length === 1 ? 'does' : 'do'}`)
      }
      return snapshots.remove(id, options)
    },
  }
}
