/**
 * The `base` template: what E2B's base image offers a program — bash, git, curl, python (3),
 * ca-certificates, procps — and sudo that `user` may run without a password.
 */
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { RecipeContext } from './recipe.js'
import { createDebootstrapRecipe } from './debootstrap-recipe.js'
import { sandboxUser } from './rootfs-etc.js'

/** Packages of `base`; templates built on it add theirs to these. */
export const basePackages = ['bash', 'git', 'curl', 'sudo', 'python3', 'python-is-python3', 'ca-certificates', 'procps'] as const

/** Recipe of the `base` template. */
export const baseRecipe = createDebootstrapRecipe({
  description: "Debian 12 (bookworm) with E2B base's tools: bash, git, curl, sudo, python, ca-certificates, procps",
  defaults: { memoryMiB: 512, cpus: 1 },
  packages: basePackages,
  allowSetuid: true,
  finish: writeSudoers,
})

/**
 * Lets `user` run anything through sudo without a password, as on E2B. sudo ignores a file in
 * sudoers.d that is not owned by root or is writable by others, so both are set here.
 */
export async function writeSudoers(rootfs: string, { onProgress }: RecipeContext): Promise<void> {
  onProgress(`I: letting "${sandboxUser.name}" use sudo without a password`)
  const dir = join(rootfs, 'etc/sudoers.d')
  await mkdir(dir, { recursive: true })
  const file = join(dir, sandboxUser.name)
  await writeFile(file, `${sandboxUser.name} ALL=(ALL:ALL) NOPASSWD: ALL\n`)
  await chmod(file, 0o440)
  if (process.getuid?.() === 0) await chown(file, 0, 0)
}
