/** Building and resolving templates: named, versioned, read-only root filesystems. */
export {
  createTemplateStore,
  type GoldenVersionSpec,
  type ResolvedTemplate,
  type TemplateBuildOptions,
  type TemplateStore,
  type TemplateStoreOptions,
} from './template-store.js'
export { treeSizeBytes } from './tree.js'
export { templateNamePattern } from './template-name.js'
export { defaultDebianMirror } from './debootstrap-recipe.js'
export { codeInterpreterPort, kernelServerPath } from './code-interpreter-recipe.js'
