/** A new channel to the init of a sandbox that an earlier agent process started. */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { SandstormError } from '../../shared/index.js'
import { hostHelpers } from './layout.js'
import type { InitProcess } from './runc-cli.js'

/** The longest a helper may take to hand the init its channel. */
const attachLimitMs = 15_000

/**
 * Hands one end of a fresh socket pair to the sandbox's init through native/init-attach.c; the
 * other end goes to `open` at once (as in runc-cli's runDetached: the init speaks right away).
 * `listenName` is the abstract name the init was started with (none: an init of an older version,
 * on the default name). Resolves once the init holds its end. The init takes it only from outside the sandbox's pid
 * namespace, and the helper gives it only to that very init (checked by pidfd and start time,
 * then by the listener's credentials).
 */
export async function attachInit<T extends { close(): void }>(init: InitProcess, listenName: string | undefined, open: (socket: Socket) => T): Promise<T> {
  const args = [String(init.pid), String(init.startTicks), ...(listenName ? [listenName] : [])]
  // Its own waits are bounded; this bounds the rest (a helper that hangs would hold every later call on the sandbox).
  const child = spawn(hostHelpers.initAttach, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe'], timeout: attachLimitMs, killSignal: 'SIGKILL' })
  const opened = open(child.stdio[3] as Socket)
  let complaint = ''
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (complaint += text))
  try {
    // Not 'close': the socket of stdio[3] stays open, which is the point.
    const [code] = (await once(child, 'exit')) as [number | null]
    if (code !== 0) {
      if (child.stderr && !child.stderr.readableEnded) await once(child.stderr, 'end')
      throw new Error(complaint.trim().split('\n').pop() || `exit ${code}`)
    }
    return opened
  } catch (err) {
    opened.close()
    throw new SandstormError('unavailable', "the sandbox's init cannot be reached", { cause: err })
  }
}
