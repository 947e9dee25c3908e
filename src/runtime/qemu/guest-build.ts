/**
 * Builds what a microVM boots, once, cached under a directory: the uncompressed kernel from
 * Debian's linux-image package, an initramfs (static busybox and the virtio modules) and the
 * guest root as an ext4 image (the template's tree with qemu-guest-agent installed).
 */
import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { execa } from 'execa'
import { SandstormError, silentLogger, type Logger } from '../../shared/index.js'
import { guestBusybox, guestDir, guestInit, initramfsInit, initramfsModules } from './guest-scripts.js'

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
  /** Cache dir, e.g. `<dataDir>/qemu/guest/<template>`. */
  dir: string
  /** The template's root tree to copy into the image. */
  templateRoot: string
  /** Size of the root image (sparse). @default 2048 */
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
    const r = await execa('xz', ['-dc', '--single-stream'], { input: image.subarray(at), encoding: 'buffer', reject: false, maxBuffer: 1 << 30 })
    const elf = r.stdout as Uint8Array
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

async function run(cmd: string, args: string[], opts: { cwd?: string; shell?: boolean } = {}) {
  const r = await execa(cmd, args, { cwd: opts.cwd, shell: opts.shell, reject: false, all: true })
  if (r.exitCode !== 0) throw new SandstormError('internal', `guest build: \`${cmd} ${args.join(' ')}\` failed: ${String(r.all).slice(-2000)}`)
  return String(r.stdout)
}

/** Builds the guest unless its files are already there; returns their paths. */
export async function buildGuest(options: GuestBuildOptions): Promise<GuestArtifacts> {
  const log = options.logger ?? silentLogger()
  const out = guestArtifacts(options.dir)
  if (existsSync(out.kernel) && existsSync(out.initramfs) && existsSync(out.rootImage)) return out
  await mkdir(options.dir, { recursive: true, mode: 0o700 })
  const work = await mkdtemp(join(options.dir, 'build-'))
  try {
    // 1. Kernel and modules, unpacked from the package (never installed on the host).
    if (!existsSync(out.kernel) || !existsSync(out.initramfs)) {
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
      await extractVmlinux(join(work, 'k', 'boot', `vmlinuz-${version}`), `${out.kernel}.tmp`)

      // 2. Initramfs: busybox, the modules, /init.
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
      await run('sh', ['-c', 'find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$0"', `${out.initramfs}.tmp`], { cwd: ird })
      await rename(`${out.kernel}.tmp`, out.kernel)
      await rename(`${out.initramfs}.tmp`, out.initramfs)
    }

    // 3. Guest root: a copy of the template, qemu-guest-agent added by apt inside it.
    if (!existsSync(out.rootImage)) {
      log.info('guest build: installing qemu-guest-agent into a copy of the template')
      const root = join(work, 'root')
      await run('cp', ['-a', options.templateRoot, root])
      await copyFile('/etc/resolv.conf', join(root, 'etc', 'resolv.conf')).catch(() => undefined)
      await run('chroot', [root, '/bin/sh', '-c', 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-guest-agent && apt-get clean && rm -rf /var/lib/apt/lists/*'])
      await mkdir(join(root, guestDir.slice(1)), { recursive: true })
      await copyFile('/bin/busybox', join(root, guestBusybox.slice(1)))
      await chmod(join(root, guestBusybox.slice(1)), 0o755)
      await writeFile(join(root, guestDir.slice(1), 'init'), guestInit, { mode: 0o755 })
      await run('mkfs.ext4', ['-q', '-F', '-L', 'sandstorm', '-d', root, `${out.rootImage}.tmp`, `${options.imageMiB ?? 2048}M`])
      await rename(`${out.rootImage}.tmp`, out.rootImage)
    }
    return out
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}
