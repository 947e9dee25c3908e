/** envd's `process.Process` service over the agent: start, connect, list, input, signals, PTY. */
import type { MessageInitShape } from '@bufbuild/protobuf'
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect'
import type { AgentApi } from '../../agent/index.js'
import { SandstormError, terminalSize } from '../../shared/index.js'
import type { ExecEvent, ProcessResult } from '../../shared/index.js'
import type { SandboxService } from '../sandbox-service.js'
import { scopedSignal } from '../scoped-signal.js'
import { parseInput } from '../validation.js'
import type { AccessTokens } from '../access-tokens.js'
import { envdScope, resolvePath } from './envd-scope.js'
import type { EnvdScope } from './envd-scope.js'
import { Signal } from './gen/process/process_pb.js'
import type { Process, ProcessEventSchema, ProcessSelector } from './gen/process/process_pb.js'
import type { ProcessRegistry } from './process-registry.js'
import { goneWaitMs, sandboxDying, untilAborted } from './sandbox-exits.js'
import type { SandboxExits } from './sandbox-exits.js'
import { severCall } from './severed-streams.js'

/** What the service needs. */
export interface ProcessServiceDeps {
  agent: AgentApi
  sandboxes: SandboxService
  tokens: AccessTokens
  registry: ProcessRegistry
  /** Ends every stream when the server closes. */
  shutdownSignal: AbortSignal
  /** When a sandbox stops running: its streams are cut then, as E2B's. */
  exits: SandboxExits
}

type EventInit = MessageInitShape<typeof ProcessEventSchema>


/** The implementation registered on the Connect router. */
export function createProcessService(deps: ProcessServiceDeps): ServiceImpl<typeof Process> {
  const { agent, sandboxes, tokens, registry, shutdownSignal, exits } = deps
  const scopeOf = (ctx: HandlerContext): EnvdScope => envdScope(ctx.requestHeader, sandboxes, tokens)
  const streamSignal = (ctx: HandlerContext): AbortSignal => AbortSignal.any([ctx.signal, shutdownSignal])

  const pidOf = (scope: EnvdScope, selector: ProcessSelector | undefined): number => {
    const s = selector?.selector
    if (s?.case === 'pid') return s.value
    if (s?.case === 'tag') {
      const pid = registry.pidOfTag(scope.sandboxId, s.value)
      if (pid === undefined) throw new SandstormError('not_found', `no process with tag "${s.value}"`)
      return pid
    }
    throw new SandstormError('invalid_argument', 'a process selector: expected a pid or a tag')
  }

  /** The process must still run: E2B answers `not_found` for one that has ended. */
  const requireRunning = async (scope: EnvdScope, pid: number): Promise<void> => {
    const found = (await agent.processes(scope.sandboxId)).find((p) => p.pid === pid)
    if (!found || !found.running || registry.hidden(scope.sandboxId, pid)) {
      throw new SandstormError('not_found', `process ${pid} not found (it may have ended)`)
    }
  }

  const dying = (id: string): boolean => sandboxDying(id, sandboxes)

  /**
   * A process's events as envd's: output (as `pty` for a PTY), then the end. When the sandbox dies
   * under it (killed, timed out, paused away), there is no end: the call's connection is cut, as
   * E2B's proxy drops it when the sandbox goes, so the SDK raises what it raises there (its
   * TimeoutError), not CommandExitError. A kill ends the commands before the sandbox is gone from
   * the catalog, so an end by SIGKILL while the sandbox is dying waits for that first.
   */
  async function* envdEvents(scope: EnvdScope, pid: number, pty: boolean, ctx: HandlerContext): AsyncGenerator<EventInit> {
    const left = exits.signalFor(scope.sandboxId)
    const signal = AbortSignal.any([streamSignal(ctx), left])
    let died = false
    try {
      for await (const event of follow(agent, scope.sandboxId, pid, signal)) {
        if (event.type === 'stdout' || event.type === 'stderr') {
          const value = new Uint8Array(Buffer.from(event.data, 'base64'))
          const output = pty ? { case: 'pty' as const, value } : { case: event.type, value }
          yield { event: { case: 'data', value: { output } } }
        } else if (event.type === 'end') {
          const byKill = event.result.signal !== null || event.result.exitCode === 137
          if (!left.aborted && !(byKill && dying(scope.sandboxId))) {
            yield { event: { case: 'end', value: endOf(event.result) } }
            return
          }
          await untilAborted(left, goneWaitMs)
          died = true
          break
        }
      }
      // Followed to no end: the sandbox left, or the caller or the server went away.
      died ||= left.aborted
    } catch (err) {
      // A follow that breaks because the sandbox went is its death too; anything else is an error.
      if (!left.aborted && !dying(scope.sandboxId)) throw err
      await untilAborted(left, goneWaitMs)
      died = true
    }
    if (died) severCall(ctx, new SandstormError('unavailable', `sandbox "${scope.sandboxId}" is not running anymore`))
  }

  return {
    async *start(req, ctx) {
      const scope = scopeOf(ctx)
      const config = req.process
      if (!config?.cmd) throw new SandstormError('invalid_argument', 'process.cmd: expected a command to run')
      const command = [config.cmd, ...config.args]
      const pty = req.pty !== undefined
      const size = req.pty ? parseInput(terminalSize, { cols: req.pty.size?.cols ?? 80, rows: req.pty.size?.rows ?? 24 }) : undefined
      // Without a cwd or a user, the agent picks the template's (an image's WORKDIR and USER), else E2B's.
      const cwd = config.cwd ? resolvePath(scope, config.cwd) : undefined
      // The start alone follows the request: the process outlives this stream, as envd's does.
      const start = scopedSignal(streamSignal(ctx))
      const { pid } = await agent
        .exec(
          scope.sandboxId,
          { argv: command, env: { ...config.envs }, ...(cwd ? { cwd } : {}), ...(scope.userGiven ? { user: scope.user } : {}), fallbackUser: scope.user, keepStdin: pty || req.stdin === true, ...(size ? { pty: size } : {}) },
          { signal: start.signal },
        )
        .finally(start.release)
      registry.add(scope.sandboxId, pid, { cmd: config.cmd, args: config.args, envs: config.envs, tag: req.tag, pty })
      yield { event: { event: { case: 'start', value: { pid } } } }
      for await (const event of envdEvents(scope, pid, pty, ctx)) yield { event }
    },

    async *connect(req, ctx) {
      const scope = scopeOf(ctx)
      const pid = pidOf(scope, req.process)
      await requireRunning(scope, pid)
      const pty = registry.get(scope.sandboxId, pid)?.pty ?? false
      yield { event: { event: { case: 'start', value: { pid } } } }
      for await (const event of envdEvents(scope, pid, pty, ctx)) yield { event }
    },

    async list(_req, ctx) {
      const scope = scopeOf(ctx)
      const processes = (await agent.processes(scope.sandboxId, { signal: ctx.signal })).filter(
        (p) => p.running && !registry.hidden(scope.sandboxId, p.pid),
      )
      return {
        processes: processes.map((p) => {
          const entry = registry.get(scope.sandboxId, p.pid)
          const config = entry
            ? { cmd: entry.cmd, args: entry.args, envs: entry.envs, cwd: p.cwd }
            : { cmd: p.argv[0] ?? '', args: p.argv.slice(1), envs: {}, cwd: p.cwd }
          return { pid: p.pid, tag: entry?.tag, config }
        }),
      }
    },

    async sendInput(req, ctx) {
      const scope = scopeOf(ctx)
      const pid = pidOf(scope, req.process)
      await writeInput(scope, pid, req.input?.input.value, ctx.signal)
      return {}
    },

    async streamInput(reqs, ctx) {
      const scope = scopeOf(ctx)
      let pid: number | undefined
      for await (const req of reqs) {
        if (req.event.case === 'start') pid = pidOf(scope, req.event.value.process)
        else if (req.event.case === 'data') {
          if (pid === undefined) throw new SandstormError('invalid_argument', 'stream input: expected a start event before data')
          await writeInput(scope, pid, req.event.value.input?.input.value, ctx.signal)
        }
      }
      return {}
    },

    async sendSignal(req, ctx) {
      const scope = scopeOf(ctx)
      const pid = pidOf(scope, req.process)
      await requireRunning(scope, pid)
      const signal = req.signal === Signal.SIGTERM ? 'SIGTERM' : 'SIGKILL'
      await agent.signal(scope.sandboxId, pid, signal, { signal: ctx.signal })
      return {}
    },

    async closeStdin(req, ctx) {
      const scope = scopeOf(ctx)
      const pid = pidOf(scope, req.process)
      await agent.writeStdin(scope.sandboxId, pid, null, true, { signal: ctx.signal })
      return {}
    },

    async update(req, ctx) {
      const scope = scopeOf(ctx)
      const pid = pidOf(scope, req.process)
      const size = req.pty?.size
      if (size) {
        if (!registry.get(scope.sandboxId, pid)?.pty) throw new SandstormError('failed_precondition', `process ${pid} has no PTY to resize`)
        await agent.resizePty(scope.sandboxId, pid, parseInput(terminalSize, { cols: size.cols, rows: size.rows }), { signal: ctx.signal })
      }
      return {}
    },
  }

  async function writeInput(scope: EnvdScope, pid: number, data: Uint8Array | undefined, signal: AbortSignal): Promise<void> {
    if (!data || data.byteLength === 0) return
    await agent.writeStdin(scope.sandboxId, pid, data, false, { signal })
  }
}

/** Follows a process; the replayed `start` is dropped (the handlers send their own first). */
async function* follow(agent: AgentApi, id: string, pid: number, signal: AbortSignal): AsyncGenerator<ExecEvent> {
  for await (const event of agent.follow(id, pid, { signal })) if (event.type !== 'start') yield event
}

/**
 * envd's end event: a process that Sandstorm (or a kill) ended by a signal reports exit code -1
 * and `signal: killed`, as envd does; otherwise `exit status N`.
 */
function endOf(result: ProcessResult): { exitCode: number; exited: boolean; status: string; error?: string } {
  if (result.signal !== null) {
    return { exitCode: -1, exited: false, status: `signal: ${result.signal === 'SIGKILL' ? 'killed' : result.signal.toLowerCase()}`, error: result.timedOut ? 'timed out' : undefined }
  }
  return { exitCode: result.exitCode, exited: true, status: `exit status ${result.exitCode}` }
}

