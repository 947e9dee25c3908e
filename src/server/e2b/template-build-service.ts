/**
 * What the e2b template builder needs of the server's image builds: one call that builds a template
 * from an image, a template or a Dockerfile and reports as it goes.
 */
import type { RegistryCredentials } from '../../images/contracts.js'
import type { TemplateBuildEvent, TemplateStartInput } from '../../shared/index.js'

/** Where a build starts from. */
export type ImageBuildSource =
  | { kind: 'image'; image: string; credentials?: RegistryCredentials }
  | { kind: 'template'; template: string }
  | { kind: 'dockerfile'; contextDir: string; dockerfile: string; buildArgs?: Record<string, string> }

/** The server's image builds, as the e2b routes call them. */
export interface ImageBuilds {
  /** Builds template `name`; `emit` gets the events, ending with `done` or `error`; never rejects. */
  build(name: string, source: ImageBuildSource & { start?: TemplateStartInput; memoryMiB?: number; cpus?: number }, emit: (event: TemplateBuildEvent) => void, signal: AbortSignal): Promise<void>
}
