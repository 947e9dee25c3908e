/** The `debian` template: Debian 12 (bookworm) minbase with python3, made by debootstrap. */
import { createDebootstrapRecipe } from './debootstrap-recipe.js'

/** Recipe of the `debian` template. */
export const debianRecipe = createDebootstrapRecipe({
  description: 'Debian 12 (bookworm) minbase with python3',
  defaults: { memoryMiB: 512, cpus: 1 },
  packages: ['python3', 'ca-certificates', 'procps'],
})
