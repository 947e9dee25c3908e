/** The file scripts and parsers of src/runtime/busybox-fs.ts, bound to the busybox bound into every sandbox. */
import { busyboxFsScripts, scriptArgv as busyboxArgv } from '../busybox-fs.js'
import { inSandbox } from './layout.js'

export { fsError, parseListing, parseStat, readAll, readHead } from '../busybox-fs.js'

/** The scripts, run with the sandbox's read-only busybox. */
export const fsScripts = busyboxFsScripts(inSandbox.busybox)

/** argv that runs one of the scripts with its arguments. */
export function scriptArgv(script: string, args: string[]): string[] {
  return busyboxArgv(inSandbox.busybox, script, args)
}
