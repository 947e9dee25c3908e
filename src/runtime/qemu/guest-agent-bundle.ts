/**
 * The host's qemu-ga and setpriv, bundled with the shared libraries `ldd` names and the host's
 * dynamic loader, for a guest root: the guest runs them through that loader (bundledCommand), so
 * an image needs no agent, no libc and no network to become a guest.
 */
import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdir } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { runOrThrow, SandstormError } from '../../shared/index.js'

/** Options of bundleGuestAgent. */
export interface GuestAgentBundleOptions {
  /** The host's guest agent (Debian package qemu-guest-agent). @default '/usr/sbin/qemu-ga' */
  qemuGa?: string
  /** The host's setpriv (util-linux), which the exec wrapper runs commands of other users with. @default '/usr/bin/setpriv' */
  setpriv?: string
}

/** The loader's name in the bundle, as bundledCommand runs it. */
const loaderName = 'ld-linux-x86-64.so.2'

/** Libraries and loader of a dynamic executable, from `ldd` (name to host path). */
export async function sharedLibraries(executable: string): Promise<{ libs: Map<string, string>; loader: string }> {
  const r = await runOrThrow('ldd', [executable], `listing the libraries of ${executable}`)
  const libs = new Map<string, string>()
  let loader = ''
  for (const line of r.stdout.split('\n')) {
    const linked = /^\s*(\S+) => (\/\S+) \(0x[0-9a-f]+\)$/.exec(line)
    if (linked) {
      libs.set(linked[1]!, linked[2]!)
      continue
    }
    if (/=> not found/.test(line)) throw new SandstormError('internal', `expected every library of ${executable} on the host, ldd said: ${line.trim()}`)
    const interp = /^\s*(\/\S*ld-linux\S*) \(0x[0-9a-f]+\)$/.exec(line)
    if (interp) loader = interp[1]!
  }
  if (!loader) throw new SandstormError('internal', `expected ldd to name the dynamic loader of ${executable}, it said: ${r.stdout.trim()}`)
  return { libs, loader }
}

/** Copies qemu-ga and setpriv, their libraries and the loader into `dir` (the guest's guestBundleDir). */
export async function bundleGuestAgent(dir: string, options: GuestAgentBundleOptions = {}): Promise<void> {
  const programs = [options.qemuGa ?? '/usr/sbin/qemu-ga', options.setpriv ?? '/usr/bin/setpriv']
  for (const p of programs) {
    if (!existsSync(p)) throw new SandstormError('failed_precondition', `expected ${p} on the host for the qemu guest (packages qemu-guest-agent and util-linux; run scripts/setup.sh), found none`)
  }
  await mkdir(join(dir, 'lib'), { recursive: true, mode: 0o755 })
  const libs = new Map<string, string>()
  let loader = ''
  for (const p of programs) {
    const found = await sharedLibraries(p)
    for (const [name, path] of found.libs) libs.set(name, path)
    loader = found.loader
    await copyFile(p, join(dir, basename(p)))
    await chmod(join(dir, basename(p)), 0o755)
  }
  // copyFile follows the host's symlinks (libfoo.so.1 -> libfoo.so.1.2.3): each soname is a plain file in the bundle.
  for (const [name, path] of libs) await copyFile(path, join(dir, 'lib', name))
  await copyFile(loader, join(dir, loaderName))
  await chmod(join(dir, loaderName), 0o755)
}
