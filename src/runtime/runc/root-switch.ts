/** A sandbox's root switched in place, by native/root-switch.c: the heart of a restore without a new container. */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { holdProcessOpen, SandstormError } from '../../shared/index.js'
import type { RootfsSpec } from '../backend.js'
import { hostHelpers } from './layout.js'
import { sandboxNofile } from './oci-spec.js'
import type { InitProcess } from './runc-cli.js'

/** The helper refused before it changed anything (its exit status 3). */
const refusedStatus = 3
/** The longest a switch may take before the restore gives up on it (it takes milliseconds). */
const answerWaitMs = 30_000

type Helper = ChildProcessByStdio<Writable, Readable, null>
interface Waiting {
  resolve(answer: { status: number; message: string }): void
  reject(err: Error): void
}

/**
 * The helper runs resident (`--serve`), started on the first switch and again after it died: a
 * spawn per switch forks the agent (tens of milliseconds on a busy host). It forks a child per
 * request, so the switches of a fork of N run at once.
 */
let helper: Helper | undefined
const waiting = new Map<number, Waiting>()
let nextId = 1
let pending = Buffer.alloc(0)

function helperProcess(): Helper {
  if (helper) return helper
  const child = spawn(hostHelpers.rootSwitch, ['--serve'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lost = (why: string) => {
    if (helper === child) helper = undefined
    pending = Buffer.alloc(0)
    for (const w of waiting.values()) w.reject(new Error(`the root switch helper ${why}`))
    waiting.clear()
  }
  child.on('error', (err) => lost(`could not run: ${err.message}`))
  child.on('exit', (code, signal) => lost(`exited (${signal ?? `code ${code}`})`))
  child.stdin.on('error', () => undefined)
  child.stdout.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    while (pending.length >= 12 && pending.length >= 12 + pending.readUInt32LE(8)) {
      const id = pending.readUInt32LE(0)
      const length = pending.readUInt32LE(8)
      const answer = { status: pending.readUInt32LE(4), message: pending.subarray(12, 12 + length).toString('utf8') }
      pending = pending.subarray(12 + length)
      waiting.get(id)?.resolve(answer)
      waiting.delete(id)
    }
    if (waiting.size === 0) idle(child)
  })
  helper = child
  return child
}

// A switch waited for holds the agent's event loop; an idle helper does not.
const busy = (child: Helper) => holdProcessOpen(child, true)
const idle = (child: Helper) => holdProcessOpen(child, false)

function request(args: string[]): Promise<{ status: number; message: string }> {
  const child = helperProcess()
  const id = nextId++ >>> 0
  const body = Buffer.from(args.map((a) => `${a}\0`).join(''))
  const head = Buffer.alloc(8)
  head.writeUInt32LE(id, 0)
  head.writeUInt32LE(body.length, 4)
  const answer = new Promise<{ status: number; message: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.delete(id)
      reject(new Error(`the root switch helper did not answer in ${answerWaitMs} ms`))
    }, answerWaitMs)
    timer.unref()
    waiting.set(id, {
      resolve: (a) => (clearTimeout(timer), resolve(a)),
      reject: (e) => (clearTimeout(timer), reject(e)),
    })
  })
  busy(child)
  child.stdin.write(Buffer.concat([head, body]))
  return answer
}

/**
 * Switches the root of the sandbox whose init is `init` to `rootfs`; the init's limits and
 * priorities, which the sandbox may have lowered on it, come back to a fresh sandbox's first (its upper and work dirs made by
 * the layer store), inside the sandbox's own mount namespace; every process but the init must be
 * gone (the init's reset). Throws `failed_precondition` when the helper refused with nothing
 * changed, and `internal` when it failed part way (the sandbox must then be replaced).
 */
export async function switchRoot(init: InitProcess, rootfs: RootfsSpec): Promise<void> {
  if (!rootfs.upperDir || !rootfs.workDir) throw new SandstormError('internal', 'a root switch needs the writable layer made first (upperDir, workDir)')
  if ([rootfs.upperDir, rootfs.workDir, ...rootfs.lowerDirs].some((p) => p.includes('\0'))) throw new SandstormError('invalid_argument', 'a layer path holds a NUL character')
  const nofile = `${sandboxNofile.soft}:${sandboxNofile.hard}`
  const args = [String(init.pid), String(init.startTicks), rootfs.allowSetuid ? '1' : '0', nofile, rootfs.upperDir, rootfs.workDir, ...rootfs.lowerDirs]
  const { status, message } = await request(args).catch((err: Error) => {
    throw new SandstormError('internal', `switching the sandbox's root failed: ${err.message}`, { cause: err })
  })
  if (status === 0) return
  const why = message.trim() || `exit status ${status}`
  if (status === refusedStatus) throw new SandstormError('failed_precondition', `the sandbox's root cannot be switched in place: ${why}`)
  throw new SandstormError('internal', `switching the sandbox's root failed part way: ${why}`)
}
