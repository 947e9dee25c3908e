/** What the server asks of an agent about image templates: build one, delete one. */
import type { CallOptions, EgressPolicy, RegistryAuth, TemplateBuildEvent, TemplateInfo, TemplateStart } from '../shared/index.js'

/** Where an image template comes from, with the files it needs already on this host. */
export type ImageBuildRequest = (
  | { kind: 'image'; image: string; credentials?: RegistryAuth }
  | { kind: 'archive'; path: string }
  | {
      kind: 'dockerfile'
      dockerfile: string
      contextDir: string
      buildArgs?: Record<string, string>
      noCache?: boolean
      /** What RUN steps may reach: the server's default egress policy (a step with `--network=none` has no network). */
      egress: EgressPolicy
    }
) & {
  memoryMiB?: number
  cpus?: number
  start?: TemplateStart
}

/** Image templates on an agent. */
export interface AgentImageApi {
  /** Builds a new version of `name`, giving progress and step events to `emit`; nothing is left of a failed build. */
  build(name: string, req: ImageBuildRequest, emit: (event: TemplateBuildEvent) => void, options?: CallOptions): Promise<TemplateInfo>
  /** Deletes every version of `name` and the layers nothing else stands on; failed_precondition while sandboxes or snapshots use it. */
  remove(name: string, options?: CallOptions): Promise<{ removedLayers: number }>
  /** Removes the image layers no template stands on (the Dockerfile build cache among them). */
  prune(options?: CallOptions): Promise<{ removedLayers: number }>
}
