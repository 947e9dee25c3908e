/**
 * What a sandbox can leave on the host, looked up from outside: mounts, cgroup directories,
 * processes, its directory under the data dir, runc's state and the agent's record. Tests call
 * `leftoversOf` after a destroy (or a failed create) and expect an empty list.
 */
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

const cgroupRoot = '/sys/fs/cgroup'

/** Everything found on the host that belongs to sandbox `id` of the stack at `dataDir`, one line per thing. */
export async function leftoversOf(dataDir: string, id: string): Promise<string[]> {
  const found: string[] = []
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8')
  for (const line of mountinfo.split('\n')) {
    const mountPoint = line.split(' ')[4] ?? ''
    if (mountPoint.includes(id)) found.push(`mount ${mountPoint}`)
  }
  for (const controller of await readdir(cgroupRoot)) {
    const dir = join(cgroupRoot, controller, 'sandstorm', id)
    if (existsSync(dir)) found.push(`cgroup ${dir}`)
  }
  for (const pid of await pidsInCgroupsNaming(id)) found.push(`process ${pid}`)
  for (const path of [
    join(dataDir, 'sandboxes', id),
    join(dataDir, 'runc', id),
    join(dataDir, 'agent', 'sandboxes', `${id}.json`),
    join(dataDir, 'storage', 'writable', id),
    join(dataDir, 'storage', 'writable', `${id}.disk`),
  ]) {
    if (existsSync(path)) found.push(`path ${path}`)
  }
  return found
}

/** Whether `path` is one of an agent's spare disks (or their images): they come and go on their own while it runs. */
export const onSpareDisk = (path: string): boolean => path.includes('/storage/spare-disks/')

/** Mount points at or under `dir` on the host, in the order the kernel lists them (parents first). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8')
  return mountinfo.split('\n').map((line) => line.split(' ')[4] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`))
}

/**
 * Loop devices whose backing file is under `dir` (a sandbox's disk image left attached). The
 * agent's spare disks (`storage/spare-disks/`) are not counted: they wait for the next creates
 * while it runs, and its close removes them (a stack's close checks that nothing stays mounted).
 */
export async function loopDevicesUnder(dir: string): Promise<string[]> {
  const found: string[] = []
  for (const dev of await readdir('/sys/block').catch(() => [] as string[])) {
    if (!dev.startsWith('loop')) continue
    const backing = await readFile(join('/sys/block', dev, 'loop', 'backing_file'), 'utf8').catch(() => '')
    if (backing.startsWith(dir) && !onSpareDisk(backing)) found.push(`loop ${dev} -> ${backing.trim()}`)
  }
  return found
}

/**
 * Live host pids whose /proc/<pid>/cgroup names the id. Zombies are not counted: they hold no
 * memory, mount or cgroup (theirs reads "(deleted)"), and reaping the sandbox's init is up to the
 * host's pid 1, which runc reparents it to.
 */
async function pidsInCgroupsNaming(id: string): Promise<number[]> {
  const pids: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const text = await readFile(join('/proc', name, 'cgroup'), 'utf8').catch(() => '')
    if (!text.includes(id)) continue
    const stat = await readFile(join('/proc', name, 'stat'), 'utf8').catch(() => '')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    if (state !== 'Z' && state !== '') pids.push(Number(name))
  }
  return pids
}

/** Names in a directory, or none when it does not exist. */
export async function namesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort()
}

/** Ids of sandboxes a stack holds anything of on disk: sandbox dirs, runc state, agent records. */
export async function sandboxIdsOnDisk(dataDir: string): Promise<string[]> {
  const ids = new Set<string>()
  for (const name of await namesIn(join(dataDir, 'sandboxes'))) ids.add(name)
  for (const name of await namesIn(join(dataDir, 'runc'))) ids.add(name)
  for (const name of await namesIn(join(dataDir, 'agent', 'sandboxes'))) ids.add(name.replace(/\.json$/, ''))
  return [...ids].sort()
}
