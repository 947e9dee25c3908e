/**
 * The `code-interpreter-v1` template (the name @e2b/code-interpreter asks for): base, Jupyter's
 * Python kernel with matplotlib, pandas and numpy, and our kernel server on port 49999, which
 * every sandbox starts at create.
 */
import { stat } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { runOrThrow, SandstormError, templateStartSchema } from '../shared/index.js'
import type { RecipeContext } from './recipe.js'
import { basePackages, writeSudoers } from './base-recipe.js'
import { createDebootstrapRecipe } from './debootstrap-recipe.js'
import { copyPythonFiles, fingerprintOf, pythonFilesOf } from './python-package.js'
import { sandboxUser } from './rootfs-etc.js'

/**
 * The server in the repository (its entry script and the package sandstorm_ci beside it), copied
 * into the template when it is built, so a template never changes under its sandboxes.
 */
export const kernelServerSourceDir = fileURLToPath(new URL('../../../src/templates/code-interpreter', import.meta.url))

/** Where the server's files live inside the template. */
export const kernelServerDir = '/opt/sandstorm/code-interpreter'

/** The server's entry script inside the template. */
export const kernelServerPath = `${kernelServerDir}/kernel_server.py`

/** The port the SDK talks to. */
export const codeInterpreterPort = 49999

/** Recipe of the `code-interpreter-v1` template. */
export const codeInterpreterRecipe = createDebootstrapRecipe({
  description: 'base with a Jupyter Python kernel (ipykernel, matplotlib, pandas, numpy) and the code interpreter server on port 49999',
  defaults: { memoryMiB: 1024, cpus: 1 },
  packages: basePackages,
  aptPackages: ['python3-ipykernel', 'python3-jupyter-client', 'python3-matplotlib', 'python3-pandas', 'python3-numpy'],
  allowSetuid: true,
  start: templateStartSchema.parse({
    // -I: the user's cwd, PYTHONPATH and ~/.local cannot shadow the server's modules; the entry
    // script puts its own directory first on the path (see kernel_server.py).
    cmd: `exec python3 -I ${kernelServerPath}`,
    user: sandboxUser.name,
    cwd: sandboxUser.home,
    ready: { type: 'http', port: codeInterpreterPort, path: '/health' },
    readyTimeoutMs: 120_000,
  }),
  // setup.sh compares this with the repository's files and rebuilds a template made from older ones.
  fingerprint: (rootfs) => kernelServerFingerprint(join(rootfs, kernelServerDir)),
  async finish(rootfs, context) {
    await writeSudoers(rootfs, context)
    await installKernelServer(rootfs, context)
    await warmFontCache(rootfs, context)
  },
})

async function installKernelServer(rootfs: string, { onProgress }: RecipeContext): Promise<void> {
  onProgress(`I: installing the kernel server in ${kernelServerDir}`)
  const entry = join(kernelServerSourceDir, 'kernel_server.py')
  if (!(await stat(entry).catch(() => null))?.isFile()) {
    throw new SandstormError('failed_precondition', `cannot build code-interpreter-v1: expected the kernel server at ${entry}, found nothing`)
  }
  await copyPythonFiles(kernelServerSourceDir, join(rootfs, kernelServerDir))
}

/** Content hash of the server's `.py` files under `dir` (the repository's or a template's copy). */
export async function kernelServerFingerprint(dir: string): Promise<string> {
  return fingerprintOf(dir, await pythonFilesOf(dir))
}

/**
 * matplotlib scans the fonts on its first import, which takes seconds; doing it once here, as the
 * sandbox user, leaves its cache in that user's home so no sandbox pays for it at its first chart.
 * This runs the template's own python in a chroot of the tree that nothing uses yet.
 */
async function warmFontCache(rootfs: string, { onProgress, signal }: RecipeContext): Promise<void> {
  onProgress('I: building matplotlib font cache')
  const u = sandboxUser
  await runOrThrow(
    'chroot',
    [`--userspec=${u.uid}:${u.gid}`, rootfs, '/usr/bin/python3', '-c', 'import matplotlib.pyplot'],
    "building matplotlib's font cache",
    // chroot itself is found on the host's PATH (it lives in /usr/sbin); python on the tree's.
    { env: { HOME: u.home, PATH: '/usr/sbin:/usr/bin:/sbin:/bin', MPLBACKEND: 'Agg' }, replaceEnv: true, cwd: '/', signal },
  )
}
