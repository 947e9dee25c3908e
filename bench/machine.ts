/** The host the benchmarks run on, printed at the top so that numbers can be compared. */
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os'
import { execa } from 'execa'
import type { MachineInfo } from './report.js'

/** Reads the cpus, kernel and runc version of this host. */
export async function machineInfo(runcBinary = 'runc'): Promise<MachineInfo> {
  const runc = await execa(runcBinary, ['--version'], { reject: false })
  const runcLines = runc.exitCode === 0 ? runc.stdout.split('\n') : []
  // `runc --version` names the version on its first line and the commit on the second.
  const runcVersion = runcLines.length > 0 ? runcLines.slice(0, 2).join(', ') : `not found (${runcBinary})`
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryMiB: Math.round(totalmem() / 1024 / 1024),
    kernel: release(),
    runc: runcVersion,
    node: process.version,
    loadAvg1m: loadavg()[0] ?? 0,
  }
}
