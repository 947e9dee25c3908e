/** Overlayfs's marks inside a layer: whiteouts (0/0 char devices) and opaque dirs (an xattr). */
import type { Stats } from 'node:fs'
import { execa } from 'execa'
import { SandstormError } from '../../shared/index.js'

/** The xattr that makes a directory hide everything below it in lower layers. */
export const opaqueXattr = 'trusted.overlay.opaque'

/** Is this entry (from lstat) a whiteout: a character device numbered 0/0? */
export function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0
}

/** Every opaque directory under `dir`, as absolute paths; walks without following any symlink. */
export async function opaqueDirs(dir: string): Promise<Set<string>> {
  const result = await execa('getfattr', ['-R', '-P', '-h', '-d', '-m', `^${opaqueXattr.replaceAll('.', '\\.')}$`, '--absolute-names', dir], {
    reject: false,
    stdin: 'ignore',
  })
  if (result.exitCode !== 0 && result.stdout === '') {
    throw new SandstormError('internal', `reading overlay marks under ${dir} failed: ${result.stderr.trim()}`)
  }
  const out = new Set<string>()
  let file: string | null = null
  for (const line of result.stdout.split('\n')) {
    if (line.startsWith('# file: ')) file = unescapeGetfattr(line.slice('# file: '.length))
    else if (file && line.startsWith(`${opaqueXattr}=`) && line.slice(opaqueXattr.length + 1) === '"y"') out.add(file)
  }
  return out
}

/** Marks a directory opaque (never following a symlink). */
export async function markOpaque(dir: string): Promise<void> {
  const result = await execa('setfattr', ['-h', '-n', opaqueXattr, '-v', 'y', dir], { reject: false, stdin: 'ignore' })
  if (result.exitCode !== 0) throw new SandstormError('internal', `marking ${dir} opaque failed: ${result.stderr.trim()}`)
}

/** getfattr writes bytes that are not printable (and backslash) as `\ooo`. */
function unescapeGetfattr(text: string): string {
  const bytes: number[] = []
  const raw = Buffer.from(text, 'utf8')
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8))
      i += 3
    } else {
      bytes.push(raw[i]!)
    }
  }
  return Buffer.from(bytes).toString('utf8')
}
