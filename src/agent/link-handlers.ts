/** What a remote agent does for each call the server sends: the AgentApi call it stands for, typed by link-contract.ts. */
import { once } from 'node:events'
import type { CallOptions, ExecEvent } from '../shared/index.js'
import { SandstormError } from '../shared/index.js'
import type { AgentApi } from './agent-api.js'
import { fromWireExec } from './link-contract.js'
import type { LinkData, LinkDataName, LinkUnary, LinkUnaryName } from './link-contract.js'

/** A finished command, reported to the server's central log. */
export interface CommandReport {
  sandboxId: string
  argv: string[]
  exitCode: number
  durationMs: number
  outputBytes: number
}

/** A handler of each unary call, typed by the contract. */
export type UnaryHandlers = { [K in LinkUnaryName]: (input: LinkUnary[K]['input'], o: CallOptions) => Promise<LinkUnary[K]['output']> }

/** One Data stream as a handler sees it. */
export interface DataIo {
  /** Sends a frame; resolves once the stream can take more (or the call ended). */
  write(frame: { chunk?: Uint8Array; json?: string }): Promise<void>
  /** The chunks the server sends, up to its end frame. */
  chunks(): AsyncIterable<Uint8Array>
  /** Starts delivering the server's frames (a stream is paused until a handler reads). */
  resume(): void
  /** Fires when the server stopped listening or the link broke. */
  readonly signal: AbortSignal
}

/** A handler of each Data call, typed by the contract. */
export type DataHandlers = { [K in LinkDataName]: (input: LinkData[K], io: DataIo) => Promise<void> }

/** The unary handlers over a local agent. */
export function unaryHandlers(local: AgentApi): UnaryHandlers {
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
    stats: (p, o) => local.stats(p.id, o),
    statsMany: (p, o) => local.statsMany(p.ids, o),
    resume: (p, o) => local.resume(p.id, o),
    wait: (p, o) => local.wait(p.id, p.pid, o),
    processes: (p, o) => local.processes(p.id, o),
    signal: (p, o) => local.signal(p.id, p.pid, p.signal, o),
    resizePty: (p, o) => local.resizePty(p.id, p.pid, p.size, o),
    listDir: (p, o) => local.listDir(p.id, p.path, o),
    stat: (p, o) => local.stat(p.id, p.path, o),
    mkdir: (p, o) => local.mkdir(p.id, p.path, p.parents, o),
    remove: (p, o) => local.remove(p.id, p.path, p.recursive, o),
    rename: (p, o) => local.rename(p.id, p.from, p.to, o),
    updateNetwork: (p, o) => local.updateNetwork(p.id, p.egress, o),
    'snapshots.take': (p, o) => snapshots().take(p.sandboxId, p.req, o),
    'snapshots.get': (p, o) => snapshots().get(p.id, o),
    'snapshots.list': (_p, o) => snapshots().list(o),
    'snapshots.remove': (p, o) => snapshots().remove(p.id, o),
    'golden.promote': (p, o) => golden().promote(p.name, p.snapshotId, o, p.start ? { start: p.start } : {}),
    'golden.rollback': (p, o) => golden().rollback(p.name, o),
    'golden.standingOn': (p, o) => golden().standingOn(p.snapshotId, o),
  }
}

/** The Data handlers over a local agent; `onCommand` hears of every command started by `exec` when it ends. */
export function dataHandlers(local: AgentApi, onCommand: (report: CommandReport) => void): DataHandlers {
  return {
    async exec(p, io) {
      // Start and output on one stream: a run costs one request and no second round trip to
      // follow. The stream's end cancels the start only: the command outlives its follower.
      io.resume()
      const start = new AbortController()
      const cancelStart = (): void => start.abort(io.signal.reason)
      io.signal.addEventListener('abort', cancelStart, { once: true })
      const req = fromWireExec(p.req)
      const started = await local.exec(p.id, req, { signal: start.signal }).finally(() => io.signal.removeEventListener('abort', cancelStart))
      await io.write({ json: JSON.stringify(started) })
      // Followed to its end even once the server stopped listening (writes then stop): this one
      // follower also counts the output for the central log.
      const heard = commandReporter(p.id, req.argv, onCommand)
      for await (const event of local.follow(p.id, started.pid)) {
        heard(event)
        // The pid frame stands for the start event: the server makes it.
        if (event.type !== 'start') await io.write({ json: JSON.stringify(event) })
      }
    },
    async follow(p, io) {
      io.resume()
      for await (const event of local.follow(p.id, p.pid, { signal: io.signal })) await io.write({ json: JSON.stringify(event) })
    },
    async readFile(p, io) {
      io.resume()
      for await (const chunk of local.readFile(p.id, p.path, { signal: io.signal })) await io.write({ chunk })
    },
    writeFile: (p, io) => local.writeFile(p.id, p.path, io.chunks(), { signal: io.signal }),
    async writeStdin(p, io) {
      const parts: Uint8Array[] = []
      for await (const chunk of io.chunks()) parts.push(chunk)
      await local.writeStdin(p.id, p.pid, p.hasData ? Buffer.concat(parts) : null, p.close, { signal: io.signal })
    },
    async connect(p, io) {
      const socket = await local.connect(p.id, p.port, { signal: io.signal })
      const cut = (): void => void socket.destroy()
      io.signal.addEventListener('abort', cut, { once: true })
      try {
        await io.write({ json: '{}' })
        io.resume()
        // The server's bytes into the sandbox, its end frame as a half-close; meanwhile the
        // sandbox's bytes out, until it ends its side.
        const inbound = (async () => {
          for await (const chunk of io.chunks()) if (!socket.write(chunk)) await once(socket, 'drain')
          socket.end()
        })().catch(cut)
        for await (const chunk of socket) await io.write({ chunk: chunk as Uint8Array })
        void inbound
      } finally {
        io.signal.removeEventListener('abort', cut)
        socket.destroy()
      }
    },
  }
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
