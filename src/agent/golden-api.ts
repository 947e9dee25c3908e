/** Golden templates as an agent makes them: snapshots promoted to template versions. */
import type { CallOptions, TemplateInfo, TemplateStart } from '../shared/index.js'

/** What a promote may set on the new version. */
export interface GoldenSettings {
  /** Its start command. @default the start command of the template the snapshot was taken of */
  start?: TemplateStart
}

/** The agent's golden template operations. */
export interface AgentGoldenApi {
  /** Adds a version of template `name` standing on the snapshot's layers, and makes it current. */
  promote(name: string, snapshotId: string, options?: CallOptions, settings?: GoldenSettings): Promise<TemplateInfo>
  /** Makes the version before the current one current; `failed_precondition` when there is none. */
  rollback(name: string, options?: CallOptions): Promise<TemplateInfo>
  /** Template versions (as `name vN`) that stand on a snapshot. */
  standingOn(snapshotId: string, options?: CallOptions): Promise<string[]>
}
