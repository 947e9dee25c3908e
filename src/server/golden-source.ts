import type { GoldenOrigin, SandboxInfo, SandboxStartSource, TemplateInfo } from '../shared/index.js'

export type { GoldenOrigin }

/** How a create from a golden template started: on its recorded config ('golden') or not ('cold'). */
export type GoldenSource = Extract<SandboxStartSource, 'golden' | 'cold'>

/** The golden version of `template` when a sandbox of it started on its recorded config, else undefined. */
export function goldenOrigin(template: TemplateInfo, input: { memoryMiB?: number; cpus?: number }): GoldenOrigin | undefined {
  if (!template.snapshotId) return undefined
  const matches = (input.memoryMiB === undefined || input.memoryMiB === template.defaults.memoryMiB) && (input.cpus === undefined || input.cpus === template.defaults.cpus)
  return matches ? { version: template.version, snapshotId: template.snapshotId } : undefined
}

/**
 * A create's answer with `source` set when the template is golden: 'golden' (and `golden`, the
 * version) when the request's memory and cpus are unset or those the template was made with, else
 * 'cold'. On runc both start on the same layers; the difference matters where a memory snapshot
 * can only be resumed on the config it was taken with (qemu).
 */
export function withGoldenSource(
  info: SandboxInfo,
  template: TemplateInfo,
  input: { memoryMiB?: number; cpus?: number },
  from: { snapshotId?: string },
): SandboxInfo & { source?: GoldenSource; golden?: GoldenOrigin } {
  if (!template.snapshotId || from.snapshotId) return info
  const golden = goldenOrigin(template, input)
  return golden ? { ...info, source: 'golden', golden } : { ...info, source: 'cold' }
}
