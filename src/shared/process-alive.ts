import { readFileSync } from 'node:fs'

/** Does a process with this pid exist? (EPERM means it does, but is not ours.) A zombie counts until it is reaped. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * When a live process started, in clock ticks since boot (field 22 of /proc/PID/stat); null when
 * the pid is free, or a zombie unless `zombie` is set (a killed process, not reaped yet, still
 * holds its pid). With the pid it names one process: a pid reused later starts later.
 */
export function startTicksOf(pid: number, options: { zombie?: boolean } = {}): number | null {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // The command name may hold spaces and parentheses; the fields after the last ')' do not.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  if (state === 'X' || state === 'x' || (state === 'Z' && !options.zombie)) return null
  const ticks = Number(fields[19])
  return Number.isSafeInteger(ticks) ? ticks : null
}
