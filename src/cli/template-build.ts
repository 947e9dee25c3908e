/** The local side of `sandstorm template build`: the template store, with progress on stderr. */
import type { TemplateInfo } from '../shared/index.js'
import { interruptSignal } from './interrupt.js'

/** Builds a template into `dir`, printing each progress line to stderr; Ctrl-C cancels it cleanly. */
export async function buildTemplate(name: string, options: { dir: string; force: boolean }): Promise<TemplateInfo> {
  // The template store is host code (the CLI bundle leaves it out): loaded only by a local build.
  const { createTemplateStore } = await import('../templates/index.js')
  const store = createTemplateStore({ dir: options.dir })
  return store.build(name, {
    force: options.force,
    signal: interruptSignal(),
    onProgress: (line) => void process.stderr.write(`${line.replace(/\n$/, '')}\n`),
  })
}
