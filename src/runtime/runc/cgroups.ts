import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { readFile, readdir, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { SandstormError } from '../../shared/index.js'
import { cgroupPath } from './layout.js'

const root = '/sys/fs/cgroup'

/** A sandbox's cgroup under the freezer hierarchy. */
const freezerDir = (sandboxId: string): string => join(root, 'freezer', cgroupPath(sandboxId))

/**
 * An empty cgroup that stays frozen, so that the kernel's freezer stays switched on: when the first
 * cgroup of the host freezes and when the last one thaws, the kernel flips a static key (patches
 * its own code), which made each freeze and each thaw of a snapshot cost 1.1 ms here instead of
 * 0.01 ms. The hold holds no process; it is shared by every agent of the host and left in place.
 */
const freezerHold = join(root, 'freezer', 'sandstorm', 'freeze-hold')
let holding = false

function holdFreezer(): void {
  if (holding) return
  holding = true
  try {
    mkdirSync(freezerHold, { recursive: true })
    if (readFileSync(join(freezerHold, 'freezer.state'), 'utf8').trim() !== 'FROZEN') writeFileSync(join(freezerHold, 'freezer.state'), 'FROZEN')
  } catch {
    // Without it a freeze costs a millisecond more; nothing else changes.
  }
}

/**
 * How long a freeze may take before it is undone and the snapshot fails (a task stuck in the
 * kernel, such as one on a dead network filesystem). A task freezes only once it leaves the
 * kernel, which a busy disk can delay. (A 2 s limit once failed a snapshot of a writer that forks
 * in a loop; that was most likely the missed fork that setFreezer now writes FROZEN again for.)
 */
const freezeLimitMs = 10_000

/**
 * Synchronous file calls (microseconds each): async ones wait in libuv's pool behind whatever
 * queued there first, such as the cgroup removals of a restored sandbox's old instance. Resolves
 * false when the cgroup is gone (so are its processes).
 */
async function setFreezer(dir: string, state: 'FROZEN' | 'THAWED'): Promise<boolean> {
  const file = join(dir, 'freezer.state')
  try {
    writeFileSync(file, state)
    if (state === 'THAWED') return true
    // The kernel freezes asynchronously; a frozen cgroup reports FROZEN once every task stopped.
    // Idle tasks stop at once; the first waits only yield, so as not to round up to a timer tick.
    // Each wait ends in another write: cgroup v1 walks the tasks to freeze only when FROZEN is
    // written, and a task forked during that walk can be missed, which leaves the cgroup FREEZING
    // for good (here about 1 freeze in 40 of a sandbox that forks without pause). The next write
    // freezes it, as runc's own freeze loop does.
    const startedAt = performance.now()
    for (let polls = 0; ; polls++) {
      if (readFileSync(file, 'utf8').trim() === 'FROZEN') return true
      if (performance.now() - startedAt > freezeLimitMs) break
      await (polls < 20 ? new Promise((resolve) => setImmediate(resolve)) : sleep(1))
      writeFileSync(file, state)
    }
  } catch (err) {
    // ENODEV: the cgroup is being removed.
    if (['ENOENT', 'ENODEV'].includes((err as NodeJS.ErrnoException).code ?? '')) return false
    throw err
  }
  writeFileSync(file, 'THAWED')
  throw new SandstormError('unavailable', `freezing the sandbox failed: expected its processes to stop within ${freezeLimitMs} ms, but some are still running (it was thawed again)`)
}

/**
 * Freezes a whole sandbox for a moment (a snapshot's consistent copy) by writing its freezer
 * cgroup directly: two file writes instead of two `runc pause/resume` runs. Returns false when
 * the sandbox was frozen already (paused by its user), which `thawSandbox` must then leave be.
 */
export async function freezeSandbox(sandboxId: string): Promise<boolean> {
  const dir = freezerDir(sandboxId)
  const state = readFileSync(join(dir, 'freezer.state'), 'utf8').trim()
  if (state === 'FROZEN') return false
  holdFreezer()
  return setFreezer(dir, 'FROZEN')
}

/** Whether the sandbox is frozen (paused by its user, or for a moment by a snapshot). */
export function sandboxFrozen(sandboxId: string): boolean {
  try {
    return readFileSync(join(root, 'freezer', cgroupPath(sandboxId), 'freezer.state'), 'utf8').trim() !== 'THAWED'
  } catch {
    return false
  }
}

/**
 * Sends SIGKILL to every process of a sandbox that is frozen, before its thaw in a destroy: thawed,
 * none runs another instruction of its own (a frozen restore's old instance must not reach the new
 * one). A frozen task cannot exit, so no pid read here can be another process's by its signal;
 * a sandbox that is not wholly frozen is left to its init's death.
 */
export function killFrozenSandbox(sandboxId: string): void {
  const dir = freezerDir(sandboxId)
  let pids: string[]
  try {
    if (readFileSync(join(dir, 'freezer.state'), 'utf8').trim() !== 'FROZEN') return
    pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)
  } catch {
    return
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL')
    } catch {
      // Gone with the cgroup.
    }
  }
}

/** Thaws what freezeSandbox froze. */
export async function thawSandbox(sandboxId: string): Promise<void> {
  await setFreezer(freezerDir(sandboxId), 'THAWED')
}

/** Removes the per-command cgroups that earlier versions made under a sandbox (before its own go). */
export async function removeExecCgroups(sandboxId: string): Promise<void> {
  const dir = freezerDir(sandboxId)
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  await Promise.all(entries.filter((e) => e.isDirectory()).map((e) => rmdir(join(dir, e.name)).catch(() => undefined)))
}

/**
 * Removes a sandbox's cgroup under every hierarchy, as `runc delete` does for a container whose
 * processes are gone, without a run of runc (milliseconds of CPU taken from the next command).
 * False when any is still there (in use), for runc to deal with.
 */
export async function removeSandboxCgroups(sandboxId: string): Promise<boolean> {
  const hierarchies = await readdir(root, { withFileTypes: true }).catch(() => [])
  const removed = await Promise.all(
    hierarchies
      .filter((h) => h.isDirectory())
      .map((h) =>
        rmdir(join(root, h.name, cgroupPath(sandboxId))).then(
          () => true,
          (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
        ),
      ),
  )
  return removed.every(Boolean)
}

/** How many times the kernel's OOM killer has killed in this sandbox. */
export async function oomKillCount(sandboxId: string): Promise<number> {
  return oomKillCountNow(sandboxId)
}

/** oomKillCount, read synchronously: it sits on every command's start, and the read takes microseconds. */
export function oomKillCountNow(sandboxId: string): number {
  try {
    const text = readFileSync(join(root, 'memory', cgroupPath(sandboxId), 'memory.oom_control'), 'utf8')
    return Number(/oom_kill (\d+)/.exec(text)?.[1] ?? 0)
  } catch {
    return 0
  }
}

/** cgroup v1's cpu.shares: the least the kernel takes, and its default. */
const cpuShares = { low: 2, normal: 1024 } as const

/**
 * Sets the sandbox's share of contended CPU (cpu.shares; its quota, the CPU limit, stays). A
 * write of a few bytes, synchronous as the freezer's are.
 */
export function setSandboxCpuWeight(sandboxId: string, weight: keyof typeof cpuShares): void {
  writeFileSync(join(root, 'cpu', cgroupPath(sandboxId), 'cpu.shares'), String(cpuShares[weight]))
}

/** Memory, cpu time and process count of a sandbox, from its cgroups. */
export async function sandboxUsage(sandboxId: string) {
  const read = (controller: string, file: string) =>
    readFile(join(root, controller, cgroupPath(sandboxId), file), 'utf8').then(Number, () => 0)
  const [memoryBytes, cpuNanos, pids] = await Promise.all([
    read('memory', 'memory.usage_in_bytes'),
    read('cpuacct', 'cpuacct.usage'),
    read('pids', 'pids.current'),
  ])
  return { memoryBytes, cpuNanos, pids }
}

/** Every cgroup directory a sandbox has (for checking that destroy left none). */
export function sandboxCgroupDirs(sandboxId: string): string[] {
  return ['memory', 'cpu', 'cpuacct', 'pids', 'freezer', 'devices', 'blkio', 'cpuset'].map((c) => join(root, c, cgroupPath(sandboxId)))
}
