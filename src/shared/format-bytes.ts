/** A byte count in the largest binary unit that keeps it at least 1, e.g. `148.2MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let n = bytes
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return i === 0 ? `${n}B` : `${n.toFixed(1)}${units[i]}`
}
