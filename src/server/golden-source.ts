import type { SandboxInfo, TemplateInfo } from '../shared/index.js'

/** How a create from a golden template started: on its recorded config ('golden') or not ('cold'). */
export type GoldenSource = 'golden' | 'cold'

/**
 * A create's answer with `source` set when the template is golden: 'golden' when the request's
 * memory and cpus are unset or those the template was made with, else 'cold'. On runc both start
 * on the same layers; the difference matters where a memory snapshot can only be resumed on the
 * config it was taken with (qemu).
 */
export function withGoldenSource(
  info: SandboxInfo,
  template: TemplateInfo,
  input: { memoryMiB?: number; cpus?: number },
  from: { snapshotId?: string },
): SandboxInfo & { source?: GoldenSource } {
  if (!template.snapshotId || from.snapshotId) return info
  const matches = (input.memoryMiB === undefined || input.memoryMiB === template.defaults.memoryMiB) && (input.cpus === undefined || input.cpus === template.defaults.cpus)
  return { ...info, source: matches ? 'golden' : 'cold' }
}
