import { SandstormError } from '../shared/index.js'
import type { TerminalSize } from './backend.js'

/** The largest number of columns or rows: the kernel keeps each in 16 bits. */
export const maxTerminalCells = 65535

/**
 * Throws `invalid_argument` naming `field` unless `size` holds whole `cols` and `rows` in
 * 1..65535; returns it checked.
 */
export function checkTerminalSize(size: unknown, field = 'pty'): TerminalSize {
  const s = size as Partial<TerminalSize> | null
  for (const key of ['cols', 'rows'] as const) {
    const n = typeof s === 'object' && s !== null ? s[key] : undefined
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > maxTerminalCells) {
      throw new SandstormError('invalid_argument', `${field}.${key}: expected a whole number of character cells from 1 to ${maxTerminalCells}, got ${JSON.stringify(n) ?? 'nothing'}`)
    }
  }
  return { cols: s!.cols!, rows: s!.rows! }
}
