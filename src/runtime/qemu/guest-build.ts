/**
 * Builds what a microVM boots, once, cached under a directory: the uncompressed kernel from
 * Debian's linux-image package and an initramfs (static busybox and the virtio modules), both
 * shared by every guest of a cache, and the guest root as an ext4 image: the template's layers
 * merged, with Sandstorm's init, a static busybox and the host's guest agent bundled in. Nothing
 * of the image runs on the host, and no package is installed into it.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, chown, copyFile, link, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { runOrThrow, runProcess, SandstormError, silentLogger, type Logger } from '../../shared/index.js'
import { bundleGuestAgent } from './guest-agent-bundle.js'
import { guestBundleDir, guestBusybox, guestDir, guestInit, guestMountPoints, initramfsInit, initramfsModules } from './guest-scripts.js'
import { entryKinds, withMergedLayers } from './layer-root.js'

/** Files of a built guest. */
export interface GuestArtifacts {
  /** Uncompressed ELF kernel (microvm boots it through its PVH entry). */
  kernel: string
  initramfs: string
  /** The guest root, read-only base of every VM's qcow2 overlay. */
  rootImage: string
}

/** Options of buildGuest. */
export interface GuestBuildOptions {
  /** Cache dir, e.g. `<dataDir>/qemu/guest/<guestCacheKey>`. */
  dir: string
  /** The template's root: its layer directories, topmost first (overlay lowerdir order; one for a plain template). */
  lowerDirs: readonly string[]
  /**
   * Where the kernel and initramfs are built once for every guest of the cache (each guest's dir
   * gets hard links to them). @default `<dirname(dir)>/boot-<format of the initramfs>`
   */
  bootDir?: string
  /** Least size of the root image (sparse); a larger root gets room for itself plus a margin. @default 2048 */
  imageMiB?: number
  logger?: Logger
}

/** Paths of a guest under its cache dir. */
export function guestArtifacts(dir: string): GuestArtifacts {
  return { kernel: join(dir, 'vmlinux'), initramfs: join(dir, 'initramfs.cpio.gz'), rootImage: join(dir, 'root.ext4') }
}

const xzMagic = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])

/** The ELF kernel inside a bzImage: the first xz stream that decompresses to an ELF image. */
export async function extractVmlinux(vmlinuz: string, out: string): Promise<void> {
  const image = await readFile(vmlinuz)
  for (let at = image.indexOf(xzMagic); at >= 0; at = image.indexOf(xzMagic, at + 1)) {
    const r = await runProcess('xz', ['-dc', '--single-stream'], { input: image.subarray(at), encoding: 'buffer', maxOutputBytes: 1 << 30 })
    const elf = r.stdout
    if (elf.length > 4 && elf[0] === 0x7f && elf[1] === 0x45 && elf[2] === 0x4c && elf[3] === 0x46) {
      await writeFile(out, elf)
      return
    }
  }
  // Some kernels are gzip inside: try that too.
  const gz = image.indexOf(Buffer.from([0x1f, 0x8b, 0x08]))
  if (gz >= 0) {
    const elf = gunzipSync(image.subarray(gz))
    if (elf[0] === 0x7f && elf[1] === 0x45) return writeFile(out, elf)
  }
  throw new SandstormError('internal', `expected an xz-compressed ELF kernel inside ${vmlinuz}, found none`)
}

async function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  return (await runOrThrow(cmd, args, `guest build: \`${cmd} ${args.join(' ')}\``, opts)).stdout
}

/** The boot files' cache dir beside the guests: named for the initramfs it holds, so that a changed one is built anew. */
export function defaultBootDir(guestDir: string): string {
  const format = createHash('sha256').update(initramfsInit).update(initramfsModules.join(' ')).digest('hex').slice(0, 12)
  return join(dirname(guestDir), `boot-${format}`)
}

const boots = new Map<string, Promise<{ kernel: string; initramfs: string }>>()

/** The shared kernel and initramfs, built on first use (one build per directory in this process). */
function bootFiles(bootDir: string, log: Logger): Promise<{ kernel: string; initramfs: string }> {
  let p = boots.get(bootDir)
  if (!p) {
    p = buildBoot(bootDir, log)
    boots.set(bootDir, p)
    p.catch(() => boots.delete(bootDir))
  }
  return p
}

async function buildBoot(bootDir: string, log: Logger): Promise<{ kernel: string; initramfs: string }> {
  const out = guestArtifacts(bootDir)
  if (existsSync(out.kernel) && existsSync(out.initramfs)) return out
  await mkdir(bootDir, { recursive: true, mode: 0o700 })
  const work = await mkdtemp(join(bootDir, 'build-'))
  try {
    // The kernel and its modules, unpacked from the package (never installed on the host).
    log.info('guest build: downloading linux-image-amd64')
    const deps = await run('apt-cache', ['depends', 'linux-image-amd64'])
    const pkg = /Depends: (linux-image-[^\s]+)/.exec(deps)?.[1]
    if (!pkg) throw new SandstormError('internal', `guest build: expected linux-image-amd64 to depend on a kernel package, apt-cache said: ${deps}`)
    await run('apt-get', ['download', '-q', pkg], { cwd: work })
    const deb = (await readdir(work)).find((f) => f.endsWith('.deb'))
    if (!deb) throw new SandstormError('internal', `guest build: apt-get download ${pkg} left no .deb`)
    await run('dpkg', ['-x', join(work, deb), join(work, 'k')])
    const version = (await readdir(join(work, 'k', 'lib', 'modules')))[0]
    if (!version) throw new SandstormError('internal', 'guest build: the kernel package holds no modules')
    await extractVmlinux(join(work, 'k', 'boot', `vmlinuz-${version}`), join(work, 'vmlinux'))

    // Initramfs: busybox, the modules, /init.
    const ird = join(work, 'initramfs')
    await mkdir(join(ird, 'bin'), { recursive: true })
    await mkdir(join(ird, 'modules'))
    await copyFile('/bin/busybox', join(ird, 'bin', 'busybox'))
    const modules = await run('find', [join(work, 'k', 'lib', 'modules', version), '-name', '*.ko'])
    for (const name of initramfsModules) {
      const path = modules.split('\n').find((p) => p.endsWith(`/${name}.ko`))
      if (!path) throw new SandstormError('internal', `guest build: module ${name} is not in ${pkg}`)
      await copyFile(path, join(ird, 'modules', `${name}.ko`))
    }
    await writeFile(join(ird, 'init'), initramfsInit, { mode: 0o755 })
    await run('sh', ['-c', 'find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$0"', join(work, 'initramfs.cpio.gz')], { cwd: ird })
    await rename(join(work, 'vmlinux'), out.kernel)
    await rename(join(work, 'initramfs.cpio.gz'), out.initramfs)
    return out
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

/** `to` as a hard link to `from` (through any symlink to it), or a copy where a link cannot be made. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  const tmp = `${to}.${process.pid}.tmp`
  await rm(tmp, { force: true })
  const real = await realpath(from)
  await link(real, tmp).catch(() => copyFile(real, tmp))
  await rename(tmp, to)
}

/**
 * The directory that goes on top of the template's layers: Sandstorm's init, busybox and the
 * guest agent bundle under guestDir, and the mount points the init needs that the root lacks
 * (an image may have no /proc, /dev or /tmp, or something else by those names).
 */
async function guestLayer(dir: string, kinds: ReadonlyMap<string, 'dir' | 'other' | 'none'>, rootStat: { mode: number; uid: number; gid: number }): Promise<void> {
  await mkdir(join(dir, guestDir.slice(1)), { recursive: true })
  // The merged root directory takes this directory's attributes: the image's own.
  await chmod(dir, rootStat.mode & 0o7777)
  await chown(dir, rootStat.uid, rootStat.gid)
  await chmod(join(dir, guestDir.slice(1)), 0o755)
  // Opaque: whatever an image put at this path is hidden, so the guest's helpers are only the build's.
  await run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(dir, guestDir.slice(1))])
  await copyFile('/bin/busybox', join(dir, guestBusybox.slice(1)))
  await chmod(join(dir, guestBusybox.slice(1)), 0o755)
  await writeFile(join(dir, guestDir.slice(1), 'init'), guestInit, { mode: 0o755 })
  await bundleGuestAgent(join(dir, guestBundleDir.slice(1)))
  for (const m of guestMountPoints) {
    const kind = kinds.get(m.path) ?? 'none'
    // A mount point replaces whatever the image has by its name; /etc or /root as a symlink stays the image's.
    if (kind === 'dir' || (kind === 'other' && !m.mount)) continue
    await mkdir(join(dir, m.path))
    await chmod(join(dir, m.path), m.mode)
  }
}

/** Writes the ext4 image of the template's layers with the guest layer on top to `image`. */
async function buildRootImage(lowerDirs: readonly string[], work: string, image: string, leastMiB: number): Promise<void> {
  const { kinds, rootStat } = await withMergedLayers(lowerDirs, work, async (root) => ({
    kinds: await entryKinds(root, guestMountPoints.map((m) => m.path)),
    rootStat: await stat(root),
  }))
  const layer = join(work, 'guest-layer')
  await guestLayer(layer, kinds, rootStat)
  await withMergedLayers([layer, ...lowerDirs], work, async (root) => {
    // mkfs.ext4 -d copies the tree as it is: owners, modes (setuid too), xattrs, device nodes,
    // and symlinks as symlinks (it never follows one out of the tree).
    const usedMiB = Number((await run('du', ['-sxm', root])).split(/\s/)[0]) || 0
    const files = Number((await run('du', ['-sx', '--inodes', root])).split(/\s/)[0]) || 0
    const sizeMiB = Math.max(leastMiB, Math.ceil(usedMiB * 1.25) + 256)
    // mkfs's default of one inode per 16 KiB runs out on a root of many small files (node_modules, site-packages).
    const inodes = Math.max(Math.ceil((sizeMiB * 1024) / 16), Math.ceil(files * 1.5) + 16384)
    await run('mkfs.ext4', ['-q', '-F', '-L', 'sandstorm', '-N', String(inodes), '-d', root, image, `${sizeMiB}M`])
  })
}

/** Builds the guest unless its files are already there; returns their paths. */
export async function buildGuest(options: GuestBuildOptions): Promise<GuestArtifacts> {
  const log = options.logger ?? silentLogger()
  const out = guestArtifacts(options.dir)
  if (existsSync(out.kernel) && existsSync(out.initramfs) && existsSync(out.rootImage)) return out
  await mkdir(options.dir, { recursive: true, mode: 0o700 })
  if (!existsSync(out.kernel) || !existsSync(out.initramfs)) {
    const boot = await bootFiles(options.bootDir ?? defaultBootDir(options.dir), log)
    await linkOrCopy(boot.kernel, out.kernel)
    await linkOrCopy(boot.initramfs, out.initramfs)
  }
  if (!existsSync(out.rootImage)) {
    const work = await mkdtemp(join(options.dir, 'build-'))
    try {
      log.info({ layers: options.lowerDirs.length }, 'guest build: the root image from the template\'s layers')
      await buildRootImage(options.lowerDirs, work, join(work, 'root.ext4'), options.imageMiB ?? 2048)
      await rename(join(work, 'root.ext4'), out.rootImage)
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  }
  return out
}
