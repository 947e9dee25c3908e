/** Reading what idle containers cost the host: their memory cgroup, their processes' PSS, MemAvailable. */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

const cgroupRoot = '/sys/fs/cgroup'

/** Memory of one container, in bytes. */
export interface ContainerMemory {
  /** `memory.usage_in_bytes` of its memory cgroup (page cache and kernel memory included). */
  usageBytes: number
  /** `rss` + `mapped_file` of its cgroup's `memory.stat`. */
  rssMappedBytes: number
  /** Sum of `Pss` over its processes' `smaps_rollup`. */
  pssBytes: number
  processes: number
}

async function readNumber(file: string): Promise<number> {
  const value = Number((await readFile(file, 'utf8')).trim())
  if (!Number.isFinite(value)) throw new Error(`${file} expected a number`)
  return value
}

function statField(stat: string, field: string): number {
  const m = new RegExp(`^${field} (\\d+)$`, 'm').exec(stat)
  if (!m) throw new Error(`memory.stat expected a "${field}" line, got none`)
  return Number(m[1])
}

/** The pids of a cgroup (v1 path like `/sandstorm/<id>`), from the pids controller. */
export async function cgroupPids(cgroupPath: string): Promise<number[]> {
  const text = await readFile(join(cgroupRoot, 'pids', cgroupPath, 'cgroup.procs'), 'utf8')
  return text.split('\n').filter(Boolean).map(Number)
}

/** PSS of one process in bytes; 0 when it has just exited. */
async function pssBytes(pid: number): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8')
    return Number(/^Pss:\s+(\d+) kB$/m.exec(text)?.[1] ?? 0) * 1024
  } catch {
    return 0
  }
}

/** Measures one container by its v1 cgroup path. */
export async function containerMemory(cgroupPath: string): Promise<ContainerMemory> {
  const dir = join(cgroupRoot, 'memory', cgroupPath)
  const [usageBytes, stat, pids] = await Promise.all([
    readNumber(join(dir, 'memory.usage_in_bytes')),
    readFile(join(dir, 'memory.stat'), 'utf8'),
    cgroupPids(cgroupPath),
  ])
  const pss = await Promise.all(pids.map(pssBytes))
  return {
    usageBytes,
    rssMappedBytes: statField(stat, 'rss') + statField(stat, 'mapped_file'),
    pssBytes: pss.reduce((a, b) => a + b, 0),
    processes: pids.length,
  }
}

/** MemAvailable of /proc/meminfo, in bytes. */
export async function memAvailableBytes(): Promise<number> {
  const text = await readFile('/proc/meminfo', 'utf8')
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(text)
  if (!m) throw new Error('/proc/meminfo expected a MemAvailable line, got none')
  return Number(m[1]) * 1024
}

/** Bytes to MiB. */
export const toMiB = (bytes: number): number => bytes / 1024 / 1024
