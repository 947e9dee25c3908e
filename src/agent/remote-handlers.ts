/** What a remote agent does for each request the server sends: the AgentApi call it stands for. */
import type { ExecEvent } from '../shared/index.js'
import type { CallOptions } from '../shared/index.js'
import { SandstormError } from '../shared/index.js'
import type { AgentApi, AgentExecRequest } from './agent-api.js'

/** A finished command, reported to the server's central log. */
export interface CommandReport {
  sandboxId: string
  argv: string[]
  exitCode: number
  durationMs: number
  outputBytes: number
}

/** Handlers of requests answered on Control. Payloads are the JSON the server's RemoteAgent sends. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type UnaryHandlers = Record<string, (p: any, o: CallOptions) => Promise<unknown>>

/** The unary handlers over a local agent; `onCommand` hears of every command when it ends. */
export function unaryHandlers(local: AgentApi, onCommand: (report: CommandReport) => void): UnaryHandlers {
  const snapshots = (): NonNullable<AgentApi['snapshots']> => {
    if (!local.snapshots) throw new SandstormError('failed_precondition', 'this agent cannot take snapshots')
    return local.snapshots
  }
  const golden = (): NonNullable<AgentApi['golden']> => {
    if (!local.golden) throw new SandstormError('failed_precondition', 'this agent cannot promote snapshots: expected an agent with a layer store')
    return local.golden
  }
  return {
    templates: (_p, o) => local.templates(o),
    create: (p, o) => local.create(p, o),
    destroy: (p, o) => local.destroy(p.id, o),
    list: (_p, o) => local.list(o),
    pause: (p, o) => local.pause(p.id, o),
    resume: (p, o) => local.resume(p.id, o),
    exec: (p, o) => startCommand(local, p, o, onCommand),
    wait: (p, o) => local.wait(p.id, p.pid, o),
    processes: (p, o) => local.processes(p.id, o),
    signal: (p, o) => local.signal(p.id, p.pid, p.signal, o),
    listDir: (p, o) => local.listDir(p.id, p.path, o),
    stat: (p, o) => local.stat(p.id, p.path, o),
    mkdir: (p, o) => local.mkdir(p.id, p.path, p.parents, o),
    remove: (p, o) => local.remove(p.id, p.path, p.recursive, o),
    rename: (p, o) => local.rename(p.id, p.from, p.to, o),
    'snapshots.take': (p, o) => snapshots().take(p.sandboxId, p.req, o),
    'snapshots.get': (p, o) => snapshots().get(p.id, o),
    'snapshots.list': (_p, o) => snapshots().list(o),
    'snapshots.remove': (p, o) => snapshots().remove(p.id, o),
    'golden.promote': (p, o) => golden().promote(p.name, p.snapshotId, o),
    'golden.rollback': (p, o) => golden().rollback(p.name, o),
    'golden.standingOn': (p, o) => golden().standingOn(p.snapshotId, o),
  }
}

/**
 * Starts the command of an `exec` request (payload `{ id, req }`, stdin in base64) and, unless the
 * caller follows it to its end itself (`reportEnd` false), reports it to the central log then.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function startCommand(local: AgentApi, p: any, o: CallOptions, onCommand: (report: CommandReport) => void, reportEnd = true): Promise<{ pid: number }> {
  const req = { ...p.req, stdin: p.req.stdin ? Buffer.from(p.req.stdin, 'base64') : undefined } as AgentExecRequest
  const started = await local.exec(p.id, req, o)
  if (reportEnd) void report(local, p.id, started.pid, req.argv, onCommand)
  return started
}

/** Counts a command's output from its events and reports it to the central log at its end. */
export function commandReporter(sandboxId: string, argv: string[], onCommand: (r: CommandReport) => void): (event: ExecEvent) => void {
  let outputBytes = 0
  return (event) => {
    if (event.type === 'stdout' || event.type === 'stderr') outputBytes += Buffer.byteLength(event.data, 'base64')
    else if (event.type === 'end') {
      const { exitCode, durationMs } = event.result
      // After the followers that wait for this end (a run's answer) have had their turn: the log is not on anyone's path.
      setImmediate(() => onCommand({ sandboxId, argv, exitCode, durationMs, outputBytes }))
    }
  }
}

/** Follows a command to its end, counting its output, for the central log. */
async function report(local: AgentApi, sandboxId: string, pid: number, argv: string[], onCommand: (r: CommandReport) => void): Promise<void> {
  const heard = commandReporter(sandboxId, argv, onCommand)
  try {
    for await (const event of local.follow(sandboxId, pid) as AsyncIterable<ExecEvent>) heard(event)
  } catch {
    // The sandbox went away under the command: there is no end to report.
  }
}
