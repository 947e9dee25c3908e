import type { Logger, TemplateStart } from '../shared/index.js'
import type { RootfsSpec } from '../runtime/backend.js'

/** What a recipe gets while it fills a root filesystem. */
export interface RecipeContext {
  /** Name of the template being built, for logs. */
  name: string
  logger: Logger
  onProgress: (line: string) => void
  signal: AbortSignal | undefined
  /** Debian mirror URL, for recipes that download packages. */
  mirror: string | undefined
}

/** How one kind of template is made: its defaults and the steps that fill an empty directory. */
export interface TemplateRecipe {
  description: string
  defaults: { memoryMiB: number; cpus: number; diskMiB?: number }
  /** Host directories every sandbox of this template sees read-only. */
  readonlyBinds: RootfsSpec['readonlyBinds']
  /** What every sandbox of this template runs at create, recorded in template.json. */
  start?: TemplateStart
  /** Lets setuid files (sudo) raise privileges in its sandboxes, within API root's caps and seccomp filter. */
  allowSetuid?: boolean
  /**
   * Content hash of what the build copied from the repository into the finished `rootfs`, recorded
   * in template.json as `fingerprint` so that a template built from older files can be found.
   */
  fingerprint?: (rootfs: string) => Promise<string>
  /** Fills `rootfs` (an empty directory that nothing else uses yet). */
  build(rootfs: string, context: RecipeContext): Promise<void>
}
