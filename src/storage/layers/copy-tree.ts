/** Copying sandbox-written trees on the host without following any symlink inside them. */
import { complainsOfFullDisk, complaintOf, diskFullError, endError, linkSignal, runProcess, type CallOptions } from '../../shared/index.js'

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
  const result = await runProcess('cp', args, { signal: linkSignal(options) })
  // cp names the host paths in its complaint: only the fact that the disk is full is shown.
  if (result.exitCode !== null && result.exitCode !== 0 && complainsOfFullDisk(complaintOf(result))) throw diskFullError('copying a layer', complaintOf(result))
  const error = endError(result, 'copying a layer')
  if (error) throw error
}
