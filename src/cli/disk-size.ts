/** Disk sizes as flags take them: MiB, or a number with M, G or T (binary units: 2G is 2048 MiB). */
import { InvalidArgumentError } from '@sandstorm/sdk'
import { limits } from '../shared/index.js'

const units: Record<string, number> = { '': 1, M: 1, G: 1024, T: 1024 * 1024 }

/** A `--disk`-style value in MiB, within the API's bounds; a usage error naming the flag otherwise. */
export function parseDiskMiB(value: string, flag: string): number {
  const m = /^([1-9][0-9]*)([MGT]?)i?B?$/i.exec(value.trim())
  const mib = m ? Number(m[1]) * units[m[2]!.toUpperCase()]! : NaN
  if (!Number.isSafeInteger(mib) || mib < limits.minDiskMiB || mib > limits.maxDiskMiB) {
    throw new InvalidArgumentError('invalid_argument', `${flag}: expected a size from ${limits.minDiskMiB}M to ${limits.maxDiskMiB / 1024 / 1024}T (MiB, or with M, G or T), got "${value}"`)
  }
  return mib
}
