/** Does a process with this pid exist? (EPERM means it does, but is not ours.) A zombie counts until it is reaped. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
