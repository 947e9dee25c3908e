/**
 * Golden templates on the server: promote a snapshot to a template version, roll back, and build
 * one from steps run in a temporary sandbox. A build that fails leaves nothing behind.
 */
import { createBuildRuns, defaultBuildTimeoutMs, type BuildRuns } from './build-runs.js'
import type { AgentApi, AgentGoldenApi, GoldenSettings } from '../agent/index.js'
import { BuildStepFailed, OutputTail, SandstormError, templateStartSchema } from '../shared/index.js'
import type { BuildTemplateRequest, CallOptions, Logger, SandboxInfo, TemplateBuildEvent, TemplateInfo } from '../shared/index.js'
import { hiddenMessage } from './request-context.js'
import type { SandboxService } from './sandbox-service.js'
import type { SnapshotService } from './snapshot-service.js'

/** Promote, rollback and build. */
export interface GoldenService {
  promote(name: string, snapshotId: string, options?: CallOptions, settings?: GoldenSettings): Promise<TemplateInfo>
  rollback(name: string, options?: CallOptions): Promise<TemplateInfo>
  /**
   * Runs a build, giving each event to `emit`; resolves once it ended and was cleaned up (its
   * last event is `done` or `error`). Never rejects. Cancelling `signal` fails the build.
   */
  build(name: string, req: BuildTemplateRequest, emit: (event: TemplateBuildEvent) => void, signal: AbortSignal): Promise<void>
}

/** Options of createGoldenService. */
export interface GoldenServiceOptions {
  agent: AgentApi
  sandboxes: SandboxService
  snapshots: SnapshotService
  logger: Logger
  /**
   * The server's running builds: a build from steps runs among them, under the build deadline, and
   * a delete of the template stops it. @default runs of its own, under the default deadline
   */
  runs?: BuildRuns
}

/** Creates the service over the agent's golden API. */
export function createGoldenService(options: GoldenServiceOptions): GoldenService {
  const { agent, sandboxes, snapshots, logger } = options
  const runs = options.runs ?? createBuildRuns({ timeoutMs: defaultBuildTimeoutMs })
  const api = (): AgentGoldenApi => {
    if (!agent.golden) throw new SandstormError('failed_precondition', 'this agent cannot promote snapshots: expected an agent with a layer store')
    return agent.golden
  }

  async function promote(name: string, snapshotId: string, call?: CallOptions, settings: GoldenSettings = {}): Promise<TemplateInfo> {
    snapshots.get(snapshotId)
    return api().promote(name, snapshotId, call, settings)
  }

  async function runStep(sandboxId: string, index: number, cmd: string, count: number, emit: (e: TemplateBuildEvent) => void, signal: AbortSignal): Promise<void> {
    emit({ type: 'step', index, cmd })
    const { pid } = await agent.exec(sandboxId, { argv: ['/bin/sh', '-c', cmd], env: {}, user: 'root' }, { signal })
    const output = new OutputTail()
    let exitCode: number | undefined
    for await (const event of agent.follow(sandboxId, pid, { signal })) {
      if (event.type === 'stdout' || event.type === 'stderr') {
        emit({ type: event.type, index, data: event.data })
        output.push(Buffer.from(event.data, 'base64'))
      } else if (event.type === 'end') {
        exitCode = event.result.exitCode
      }
    }
    if (exitCode === undefined) {
      signal.throwIfAborted()
      throw new SandstormError('internal', `build step ${index + 1}: expected the process to end with an exit code, but its output ended without one`)
    }
    emit({ type: 'step_end', index, exitCode })
    if (exitCode !== 0) throw new BuildStepFailed({ index, cmd, exitCode, output: output.text() }, count)
  }

  async function build(name: string, req: BuildTemplateRequest, emit: (e: TemplateBuildEvent) => void, signal: AbortSignal): Promise<void> {
    let sandbox: SandboxInfo | undefined
    let snapshotId: string | undefined
    let done = false
    // The last event is sent only once the build sandbox (and, on failure, the snapshot) is gone.
    let last: TemplateBuildEvent
    try {
      api()
      sandbox = await sandboxes.create({ template: req.from, memoryMiB: req.memoryMiB, cpus: req.cpus, runtime: req.runtime, labels: { 'sandstorm.build': name } }, { signal })
      for (const [index, cmd] of req.steps.entries()) await runStep(sandbox.id, index, cmd, req.steps.length, emit, signal)
      signal.throwIfAborted()
      snapshotId = (await snapshots.take(sandbox.id, `build of ${name}`, { signal })).id
      signal.throwIfAborted()
      // Not cancellable from here on: the version is either made whole or not at all.
      const template = await api().promote(name, snapshotId, {}, req.start ? { start: templateStartSchema.parse(req.start) } : {})
      done = true
      logger.info({ template: name, version: template.version, snapshotId }, 'template built from steps')
      last = { type: 'done', template, snapshotId }
    } catch (err) {
      // Stopped: the reason says by what (the deadline, a delete, the client gone).
      const reason: unknown = signal.aborted ? signal.reason : undefined
      const e = !signal.aborted || err instanceof BuildStepFailed ? SandstormError.from(err) : reason instanceof SandstormError ? reason : new SandstormError('canceled', `build of template "${name}" was cancelled`)
      logger.warn({ template: name, err: e }, 'template build failed; removing what it made')
      last = { type: 'error', code: e.code, message: e.expose ? e.message : hiddenMessage(), ...(err instanceof BuildStepFailed ? { step: err.step } : {}) }
    } finally {
      // Cleanup runs whatever happened to the request: it takes no signal.
      if (sandbox) await sandboxes.destroy(sandbox.id, {}, 'template build ended').catch((err: unknown) => logger.error({ sandboxId: sandbox?.id, err }, 'could not remove a build sandbox'))
      if (snapshotId && !done) await snapshots.remove(snapshotId).catch((err: unknown) => logger.error({ snapshotId, err }, 'could not remove the snapshot of a failed build'))
    }
    emit(last)
  }

  return {
    promote,
    rollback: (name, call) => api().rollback(name, call),
    build: (name, req, emit, signal) => runs.run(name, signal, (stop) => build(name, req, emit, stop)),
  }
}
