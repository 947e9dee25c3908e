/** Copying sandbox-written trees on the host without following any symlink inside them. */
import { complainsOfFullDisk, diskFullError, SandstormError, type CallOptions, linkSignal } from '../../shared/index.js'
import { complaintOf, runTool } from '../run-tool.js'

/** Options of copyTree and copyInto. */
export interface CopyOptions extends CallOptions {
  /**
   * Hard-link files instead of copying their data (directories are still made afresh). Only for
   * sources that nothing ever writes again: read-only layers, never a sandbox's upper dir, whose
   * files the sandbox goes on changing in place. @default false
   */
  link?: boolean
}

/**
 * Copies `src` to `dest` (which must not exist) with `cp -a`: links are copied as links, never
 * followed; devices (overlay whiteouts), owners, modes, times, hard links and xattrs (overlay's
 * opaque marks) are kept. Where the filesystem has reflinks, file data is shared, not copied.
 */
export async function copyTree(src: string, dest: string, options: CopyOptions = {}): Promise<void> {
  await runCp(['-a', dataFlag(options), '--no-target-directory', src, dest], options)
}

/**
 * Copies everything inside `src` into the existing dir `dest`, replacing what is there entry by
 * entry (directories merge). Used to apply one layer over another when squashing.
 */
export async function copyInto(src: string, dest: string, options: CopyOptions = {}): Promise<void> {
  await runCp(['-a', dataFlag(options), '--remove-destination', '--no-target-directory', `${src}/.`, dest], options)
}

const dataFlag = (options: CopyOptions): string => (options.link ? '--link' : '--reflink=auto')

async function runCp(args: string[], options: CallOptions): Promise<void> {
  const result = await runTool('cp', args, { signal: linkSignal(options) })
  if (result.isCanceled) throw new SandstormError('canceled', 'copying a layer was canceled')
  if (result.exitCode !== 0) {
    // cp names the host paths in its complaint: only the fact that the disk is full is shown.
    if (complainsOfFullDisk(complaintOf(result))) throw diskFullError('copying a layer', complaintOf(result))
    throw new SandstormError('internal', `copying a layer failed: expected cp to succeed, got exit ${result.exitCode}: ${complaintOf(result)}`)
  }
}
