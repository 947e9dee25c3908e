/**
 * The baseline: bare `runc` on a minimal bundle made in a temp dir (a static busybox as the whole
 * root, `runc spec` defaults, no seccomp), driven the way Sandstorm drives runc, from node.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { copyFile, mkdir, mkdtemp, open, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { nowMs } from './stats.js'

/** Options of createBareRunc. */
export interface BareRuncOptions {
  /** @default 'runc' */
  binary?: string
  /** A statically linked busybox, the only file of the root. @default '/bin/busybox' */
  busybox?: string
}

/** Containers of the minimal bundle, each in its own cgroup under one parent of this run. */
export interface BareRunc {
  /** runc's state dir (`runc --root`). */
  readonly runcRoot: string
  /** The v1 cgroup path of a container (the same under every controller). */
  cgroupPath(id: string): string
  /** Starts `busybox sleep 1000` detached; resolves with how long `runc run --detach` took. */
  run(id: string): Promise<number>
  /** Removes a container (killing it); a missing one is not an error. */
  remove(id: string): Promise<void>
  /** Removes every container, the cgroup parent and the temp dir; returns what could not be removed. */
  close(): Promise<string[]>
}

/** How one `runc exec` (or any short child) ended, and how long it took from spawn to closed pipes. */
export interface ChildTiming {
  ms: number
  exitCode: number | null
  stdout: string
  stderr: string
}

/** Spawns a short command with piped stdio and times it until it has exited and its pipes closed. */
export async function timeChild(file: string, args: string[]): Promise<ChildTiming> {
  const start = nowMs()
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += String(c)))
  child.stderr.on('data', (c: Buffer) => (stderr += String(c)))
  const [exitCode] = (await once(child, 'close')) as [number | null]
  return { ms: nowMs() - start, exitCode, stdout, stderr }
}

/** Makes the minimal bundle in a temp dir; nothing runs until `run`. */
export async function createBareRunc(options: BareRuncOptions = {}): Promise<BareRunc> {
  const binary = options.binary ?? 'runc'
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-bench-bare-'))
  const runcRoot = join(dir, 'state')
  const rootfs = join(dir, 'rootfs')
  // One parent per run, so that removing it at the end cannot touch anyone else's cgroups.
  const cgroupParent = `/sandstorm-bench-${randomBytes(4).toString('hex')}`
  const ids = new Set<string>()

  await mkdir(join(rootfs, 'bin'), { recursive: true })
  await copyFile(options.busybox ?? '/bin/busybox', join(rootfs, 'bin', 'busybox'))
  await execa(binary, ['spec'], { cwd: dir })
  const template = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[] }
    root: { path: string; readonly: boolean }
    linux: { cgroupsPath?: string; seccomp?: unknown }
  }
  template.process.terminal = false
  template.process.args = ['/bin/busybox', 'sleep', '1000']
  template.root = { path: rootfs, readonly: true }
  delete template.linux.seccomp

  const cgroupPath = (id: string) => `${cgroupParent}/${id}`

  async function remove(id: string): Promise<void> {
    await execa(binary, ['--root', runcRoot, 'delete', '--force', id], { reject: false })
    ids.delete(id)
    await rm(join(dir, 'bundles', id), { recursive: true, force: true })
  }

  return {
    runcRoot,
    cgroupPath,
    async run(id: string): Promise<number> {
      // Each container needs its own config (its cgroup path); the root is shared and read-only.
      const bundle = join(dir, 'bundles', id)
      await mkdir(bundle, { recursive: true })
      await writeFile(join(bundle, 'config.json'), JSON.stringify({ ...template, linux: { ...template.linux, cgroupsPath: cgroupPath(id) } }))
      // stderr goes to a file, not a pipe: the container's init inherits it and would hold a pipe open.
      const log = await open(join(bundle, 'run.log'), 'w')
      ids.add(id)
      const start = nowMs()
      const child = spawn(binary, ['--root', runcRoot, 'run', '--detach', '--bundle', bundle, id], { stdio: ['ignore', 'ignore', log.fd] })
      const [code] = (await once(child, 'exit').finally(() => log.close())) as [number | null]
      const ms = nowMs() - start
      if (code !== 0) {
        const text = await readFile(join(bundle, 'run.log'), 'utf8').catch(() => '')
        throw new Error(`bare runc run of ${id} expected exit 0, got ${code}: ${text.trim().split('\n').pop() ?? ''}`)
      }
      return ms
    },
    remove,
    async close(): Promise<string[]> {
      for (const id of [...ids]) await remove(id)
      const left: string[] = []
      const list = await execa(binary, ['--root', runcRoot, 'list', '--quiet'], { reject: false })
      for (const id of list.stdout.split('\n').filter(Boolean)) left.push(`bare runc container ${id} (runc --root ${runcRoot})`)
      for (const controller of await readdir('/sys/fs/cgroup').catch(() => [])) {
        const parent = join('/sys/fs/cgroup', controller, cgroupParent)
        await rmdir(parent).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') left.push(`cgroup ${parent} (${err.code})`)
        })
      }
      if (left.length === 0) await rm(dir, { recursive: true, force: true })
      return left
    },
  }
}
