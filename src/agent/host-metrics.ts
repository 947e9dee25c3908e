/** Host metrics an agent puts in each heartbeat. */
import { statfs } from 'node:fs/promises'
import { freemem, loadavg, totalmem } from 'node:os'

/** Load, memory and free disk of the host (disk: the file system of the data dir). */
export async function hostMetrics(dataDir: string): Promise<{ load1: number; memoryFreeMib: number; memoryTotalMib: number; diskFreeMib: number }> {
  const fs = await statfs(dataDir).catch(() => null)
  return {
    load1: loadavg()[0] ?? 0,
    memoryFreeMib: Math.round(freemem() / 1024 ** 2),
    memoryTotalMib: Math.round(totalmem() / 1024 ** 2),
    diskFreeMib: fs ? Math.round((fs.bavail * fs.bsize) / 1024 ** 2) : 0,
  }
}
