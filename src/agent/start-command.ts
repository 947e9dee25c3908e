/**
 * A template's start command, run in a new sandbox: started in the background, then a probe in
 * the sandbox repeats the ready check until it passes. Both are ordinary commands of the sandbox,
 * so this works alike on every runtime and wherever the agent runs (locally or over the fleet
 * link): no host process reaches into a sandbox's network for it, and a sandbox with no network
 * is checked the same way.
 */
import { SandstormError, throwIfAborted, type CallOptions, type ExecEvent, type TemplateStart } from '../shared/index.js'
import type { AgentApi } from './agent-api.js'

/**
 * The static busybox every runtime puts into its sandboxes (runc binds it, the qemu guest build
 * copies it), so the probe needs nothing of the template: no curl, no wget.
 */
export const sandboxBusybox = '/.sandstorm/busybox'

/** How often the probe tries again; each try is a short process in the sandbox, not a host timer. */
const probeGapUs = 50_000

/** Bytes of the start command's output kept for an error message. */
const keptOutputBytes = 4096

/** What runStartCommand needs of an agent. */
export type StartCommandHost = Pick<AgentApi, 'exec' | 'follow' | 'wait' | 'signal'>

/** The ready check of `start` as people read it. */
export function describeReadyCheck(start: TemplateStart): string {
  return start.ready.type === 'http' ? `GET http://127.0.0.1:${start.ready.port}${start.ready.path}` : `\`${start.ready.cmd}\``
}

/** The probe's argv: a shell loop in the sandbox that ends with 0 once the check passes. */
export function probeArgv(start: TemplateStart): string[] {
  const bb = sandboxBusybox
  const gap = `${bb} usleep ${probeGapUs}`
  if (start.ready.type === 'http') {
    // -Y off: a proxy set in the sandbox's env must not carry a check of its own loopback.
    const url = `http://127.0.0.1:${start.ready.port}${start.ready.path}`
    return [bb, 'sh', '-c', `until ${bb} wget -q -Y off -O /dev/null "$0" 2>/dev/null; do ${gap}; done`, url]
  }
  return [bb, 'sh', '-c', `until /bin/sh -c "$0" >/dev/null 2>&1; do ${gap}; done`, start.ready.cmd]
}

/**
 * Starts `start` in sandbox `id` and resolves once its ready check passes. Fails, naming the
 * command and the tail of its output, when it exits non-zero first or the check does not pass within
 * `start.readyTimeoutMs`; the caller then destroys the sandbox (which ends the command with it).
 * The sandbox's own env vars reach it as they reach every command (the runtime sets them first).
 */
export async function runStartCommand(
  host: StartCommandHost,
  id: string,
  template: { name: string; start: TemplateStart },
  call: CallOptions = {},
): Promise<{ pid: number }> {
  const { start } = template
  throwIfAborted(call.signal)
  const { pid } = await host.exec(id, { argv: ['/bin/sh', '-c', start.cmd], env: start.env, user: start.user, ...(start.cwd ? { cwd: start.cwd } : {}) }, call)
  const following = new AbortController()
  const output = collectTail(host.follow(id, pid, { signal: following.signal }))
  let probePid: number | undefined
  try {
    const probe = await host.exec(id, { argv: probeArgv(start), env: {}, user: start.user, timeoutMs: start.readyTimeoutMs }, call)
    probePid = probe.pid
    const probed = host.wait(id, probe.pid).then((result) => ({ kind: 'probe' as const, result }))
    // A command that exits 0 may have left a daemon behind (`server &`): its probe decides.
    type Outcome = Awaited<typeof probed> | { kind: 'exited'; exitCode: number }
    const failed = output.ended.then((exitCode): Outcome | Promise<Outcome> => (exitCode === 0 ? probed : { kind: 'exited', exitCode }))
    const outcome = await Promise.race([probed, failed, aborted(call.signal)])
    if (outcome.kind === 'probe' && outcome.result.exitCode === 0) return { pid }
    const what = `template "${template.name}": start command \`${start.cmd}\``
    const check = describeReadyCheck(start)
    const tail = output.tail()
    const shown = tail ? `; its last output:\n${tail}` : '; it printed nothing'
    if (outcome.kind === 'exited') {
      throw new SandstormError('failed_precondition', `${what} exited with ${outcome.exitCode} before its ready check (${check}) passed${shown}`)
    }
    if (outcome.kind === 'canceled') throw new SandstormError('canceled', `${what}: the create was canceled while it started`)
    if (outcome.result.timedOut) {
      throw new SandstormError('deadline_exceeded', `${what} was not ready within ${start.readyTimeoutMs} ms: expected its ready check (${check}) to pass${shown}`)
    }
    throw new SandstormError('internal', `${what}: the ready check's probe ended with ${outcome.result.exitCode}: expected 0${shown}`)
  } catch (err) {
    if (probePid !== undefined) await host.signal(id, probePid, 'SIGKILL').catch(() => undefined)
    throw err
  } finally {
    following.abort()
  }
}

/** Resolves when `signal` fires (never, without one). */
function aborted(signal: AbortSignal | undefined): Promise<{ kind: 'canceled' }> {
  return new Promise((resolve) => {
    if (!signal) return
    if (signal.aborted) return resolve({ kind: 'canceled' })
    signal.addEventListener('abort', () => resolve({ kind: 'canceled' }), { once: true })
  })
}

/** Keeps the last bytes of a process's stdout and stderr; `ended` resolves with its exit code (never while it runs). */
function collectTail(events: AsyncIterable<ExecEvent>): { tail(): string; ended: Promise<number> } {
  let kept = Buffer.alloc(0)
  const ended = (async () => {
    for await (const event of events) {
      if (event.type === 'stdout' || event.type === 'stderr') {
        kept = Buffer.concat([kept, Buffer.from(event.data, 'base64')])
        if (kept.length > keptOutputBytes) kept = kept.subarray(kept.length - keptOutputBytes)
      } else if (event.type === 'end') {
        return event.result.exitCode
      }
    }
    // Followed no further (ready, or failed for another reason): nothing to report.
    return new Promise<number>(() => undefined)
  })()
  ended.catch(() => undefined)
  return { tail: () => kept.toString('utf8').trimEnd(), ended }
}
