/** The fleet's templates: every agent's answer in one list, one entry per name. */
import type { TemplateInfo } from '../../shared/index.js'

/** One agent's templates. */
export interface TemplatesAnswer {
  agentId: string
  templates: TemplateInfo[]
}

/**
 * One entry per name. Any agent can answer any template, and the entry kept decides a create's
 * defaults, so a golden template (one that stands on a snapshot) is taken from the agent the
 * server recorded as holding that snapshot; an answer that claims a snapshot recorded as another
 * agent's is dropped. Otherwise the first answer, in the order the agents joined, is kept.
 */
export function mergeTemplates(answers: TemplatesAnswer[], holderOf: (snapshotId: string) => string | undefined): TemplateInfo[] {
  const byName = new Map<string, { template: TemplateInfo; own: boolean }>()
  for (const { agentId, templates } of answers) {
    for (const template of templates) {
      const holder = template.snapshotId === undefined ? undefined : holderOf(template.snapshotId)
      if (holder !== undefined && holder !== agentId) continue
      const own = holder === agentId
      const kept = byName.get(template.name)
      if (!kept || (own && !kept.own)) byName.set(template.name, { template, own })
    }
  }
  return [...byName.values()].map((e) => e.template)
}
