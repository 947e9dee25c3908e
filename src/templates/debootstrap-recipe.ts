/**
 * Recipes made by debootstrap: Debian 12 (bookworm) minbase with a list of packages, the sandbox
 * user, and steps of the recipe's own run on the finished tree (files, sudoers) before it is sealed.
 */
import { chmod, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { howItEnded, runProcess, SandstormError, throwIfAborted } from '../shared/index.js'
import type { RecipeContext, TemplateRecipe } from './recipe.js'
import { addSandboxUser, writeNetworkFiles } from './rootfs-etc.js'

/** Mirror used when neither the build option nor SANDSTORM_DEBIAN_MIRROR names one. */
export const defaultDebianMirror = 'http://deb.debian.org/debian'

/** Options of createDebootstrapRecipe. */
export interface DebootstrapRecipeOptions extends Omit<TemplateRecipe, 'build' | 'readonlyBinds'> {
  /** Debian packages added to minbase (debootstrap resolves their Depends, not Recommends). */
  packages: readonly string[]
  /**
   * Packages installed afterwards by apt-get in a chroot of the tree (no Recommends). apt's
   * resolver handles what debootstrap's cannot (alternatives, versioned dependencies of big
   * stacks such as Jupyter's).
   */
  aptPackages?: readonly string[]
  /** Runs on the finished tree, after the user is added and apt's caches are gone. */
  finish?: (rootfs: string, context: RecipeContext) => Promise<void>
}

/** A recipe that debootstraps bookworm minbase with `packages`, then runs `finish`. */
export function createDebootstrapRecipe(options: DebootstrapRecipeOptions): TemplateRecipe {
  const { packages, aptPackages = [], finish, ...recipe } = options
  return {
    ...recipe,
    readonlyBinds: [],
    async build(rootfs, context) {
      const mirror = checkMirror(context.mirror ?? process.env.SANDSTORM_DEBIAN_MIRROR ?? defaultDebianMirror)
      await debootstrap(rootfs, mirror, packages, context)
      throwIfAborted(context.signal)
      if (aptPackages.length > 0) await aptInstall(rootfs, aptPackages, context)
      context.onProgress('I: removing apt caches')
      await emptyDir(join(rootfs, 'var/cache/apt/archives'), (name) => name.endsWith('.deb'))
      await emptyDir(join(rootfs, 'var/lib/apt/lists'), (name) => name !== 'partial' && name !== 'lock')
      context.onProgress('I: adding user "user" (1000:1000)')
      await addSandboxUser(rootfs, context.logger)
      await writeNetworkFiles(rootfs)
      throwIfAborted(context.signal)
      if (finish) await finish(rootfs, context)
      throwIfAborted(context.signal)
    },
  }
}

/** The mirror ends up on debootstrap's command line, so only a plain URL is accepted. */
function checkMirror(mirror: string): string {
  let url: URL
  try {
    url = new URL(mirror)
  } catch {
    throw new SandstormError('invalid_argument', `invalid Debian mirror: expected a URL such as ${defaultDebianMirror}, got "${mirror}"`)
  }
  if (!['http:', 'https:', 'file:'].includes(url.protocol)) {
    throw new SandstormError('invalid_argument', `invalid Debian mirror: expected an http, https or file URL, got "${mirror}"`)
  }
  return mirror
}

/** Runs debootstrap of bookworm minbase with `packages`. */
async function debootstrap(rootfs: string, mirror: string, packages: readonly string[], context: RecipeContext): Promise<void> {
  await runStreaming('debootstrap', ['--variant=minbase', `--include=${packages.join(',')}`, 'bookworm', rootfs, mirror], context)
}

/**
 * Installs `packages` with apt-get in a chroot of the tree, which nothing else uses yet; the
 * package lists it fetched go with apt's caches afterwards. A policy-rc.d keeps maintainer
 * scripts from starting services there.
 */
async function aptInstall(rootfs: string, packages: readonly string[], context: RecipeContext): Promise<void> {
  const policy = join(rootfs, 'usr/sbin/policy-rc.d')
  await writeFile(policy, '#!/bin/sh\nexit 101\n')
  await chmod(policy, 0o755)
  try {
    context.onProgress(`I: installing with apt-get: ${packages.join(' ')}`)
    await runStreaming('chroot', [rootfs, 'apt-get', '-q', 'update'], context)
    throwIfAborted(context.signal)
    await runStreaming('chroot', [rootfs, 'apt-get', '-q', '-y', '--no-install-recommends', 'install', ...packages], context)
  } finally {
    await rm(policy, { force: true })
  }
}

/**
 * Runs a build tool and streams its lines. It runs in its own process group so that a cancel
 * stops it together with the dpkg and apt it started inside the tree, before the tree is removed.
 */
async function runStreaming(command: string, args: string[], { name, logger, onProgress, signal }: RecipeContext): Promise<void> {
  throwIfAborted(signal)
  logger.info({ template: name, command, args }, `running ${command}`)
  // The last lines say why it failed; debootstrap's and apt's own logs sit inside the tree that is removed.
  const tail: string[] = []
  const onLine = (line: string): void => {
    tail.push(line)
    if (tail.length > 20) tail.shift()
    logger.debug({ template: name, line }, command)
    onProgress(line)
  }
  const result = await runProcess(command, args, { env: { DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' }, ownGroup: true, signal, onLine })
  throwIfAborted(signal)
  if (result.startErrno === 'ENOENT') {
    throw new SandstormError('failed_precondition', `${command} is not installed: expected it on PATH (scripts/setup.sh installs debootstrap)`)
  }
  if (result.exitCode !== 0) {
    throw new SandstormError('internal', `${[command, ...args.slice(0, 3)].join(' ')} ended with ${howItEnded(result)}; expected exit 0. Last output:\n${tail.join('\n')}`)
  }
}

/** Removes the entries of `dir` that `pick` selects; a missing dir is already empty. */
async function emptyDir(dir: string, pick: (name: string) => boolean): Promise<void> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  for (const name of names) if (pick(name)) await rm(join(dir, name), { recursive: true, force: true })
}
