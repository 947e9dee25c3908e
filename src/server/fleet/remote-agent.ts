/** An AgentApi over one agent's link: small calls on Control, bytes on a Data stream per call. */
import { once } from 'node:events'
import { Duplex } from 'node:stream'
import { toWireExec } from '../../agent/index.js'
import type { AgentApi, AgentInfo } from '../../agent/index.js'
import type { DataFrame } from '../../proto/index.js'
import { SandstormError } from '../../shared/index.js'
import type { CallOptions, ExecEvent } from '../../shared/index.js'
import { fromWire } from './agent-connection.js'
import type { AgentConnection, DataCall } from './agent-connection.js'

/** Frames of a Data stream until the agent's end frame; a stream cut short is `unavailable`. */
async function* framesOf(stream: DataCall, agentId: string): AsyncGenerator<DataFrame> {
  const cut = (): never => {
    throw new SandstormError('unavailable', `agent "${agentId}" went away during a transfer`)
  }
  stream.on('error', () => undefined)
  let cancelled = false
  stream.once('cancelled', () => (cancelled = true))
  try {
    // Leaving the loop at the end frame must not destroy the call: finish() ends it with a status.
    for await (const frame of stream.iterator({ destroyOnReturn: false }) as AsyncIterable<DataFrame>) {
      if (frame.error?.code) throw fromWire(frame.error)
      yield frame
      if (frame.end) return
    }
  } catch (err) {
    if (err instanceof SandstormError) throw err
    cut()
  }
  if (cancelled) cut()
  cut()
}

/** Ends the server's side of a Data stream (the RPC's status); safe to call twice. */
function finish(stream: DataCall): void {
  if (!stream.writableEnded && !stream.destroyed) stream.end()
}

async function write(stream: DataCall, frame: DataFrame): Promise<void> {
  if (!stream.write(frame)) await once(stream, 'drain')
}

/** A Data stream and the reader of its frames. */
interface Output {
  stream: DataCall
  frames: AsyncGenerator<DataFrame>
}

/** How long the output of a started command waits for its follower before the stream is dropped (a later follow replays it). */
const claimWindowMs = 10_000

/** Output streams of commands just started, until their follower claims them. */
function createParkedStreams(): { park(key: string, output: Output): void; claim(key: string): Output | undefined } {
  const parked = new Map<string, Output & { timer: NodeJS.Timeout }>()
  return {
    park(key, output) {
      // Nobody followed (a background exec): stop the agent sending; the command runs on.
      const timer = setTimeout(() => {
        parked.delete(key)
        finish(output.stream)
      }, claimWindowMs)
      timer.unref()
      parked.set(key, { ...output, timer })
    },
    claim(key) {
      const found = parked.get(key)
      if (!found) return undefined
      parked.delete(key)
      clearTimeout(found.timer)
      return { stream: found.stream, frames: found.frames }
    },
  }
}

/** Resolves with the first frame, or rejects with the signal's reason when it fires first. */
async function firstFrame(frames: AsyncGenerator<DataFrame>, signal: AbortSignal | undefined): Promise<DataFrame | undefined> {
  if (!signal) return (await frames.next()).value ?? undefined
  let onAbort!: () => void
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason)
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return (await Promise.race([frames.next(), aborted])).value ?? undefined
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/**
 * A Data stream as a Duplex of bytes (ingress into a sandbox): what is written goes to the agent in
 * chunk frames, with flow control; ending it sends the end frame (a half-close); the agent's
 * chunks are read until its end frame.
 */
function tunnelOf(stream: DataCall, frames: AsyncGenerator<DataFrame>): Duplex {
  let pumping = false
  let wake: (() => void) | undefined
  const pump = async (): Promise<void> => {
    try {
      for await (const frame of frames) {
        // Past the reader's high-water mark: wait for its next read().
        if (frame.chunk && frame.chunk.length > 0 && !duplex.push(frame.chunk)) await new Promise<void>((resolve) => (wake = resolve))
      }
      duplex.push(null)
    } catch (err) {
      duplex.destroy(err as Error)
    }
  }
  const duplex = new Duplex({
    read() {
      if (!pumping) {
        pumping = true
        void pump()
      }
      const resume = wake
      wake = undefined
      resume?.()
    },
    write(chunk: Buffer, _encoding, callback) {
      if (stream.write({ requestId: 0, chunk })) callback()
      else stream.once('drain', () => callback())
    },
    final(callback) {
      stream.write({ requestId: 0, end: true })
      callback()
    },
    destroy(err, callback) {
      finish(stream)
      callback(err)
    },
  })
  return duplex
}

/** The AgentApi of one connected agent. */
export function createRemoteAgent(conn: AgentConnection, info: AgentInfo): AgentApi {
  const call = conn.call.bind(conn)
  const started = createParkedStreams()
  const follow = async (id: string, pid: number, o: CallOptions | undefined): Promise<Output> => {
    const stream = await conn.openData('follow', { id, pid }, o)
    return { stream, frames: framesOf(stream, conn.agentId) }
  }
  return {
    info: () => info,
    templates: (o) => call('templates', null, o),
    create: (req, o) => call('create', req, o),
    destroy: (id, o) => call('destroy', { id }, o),
    list: (o) => call('list', null, o),
    pause: (id, o) => call('pause', { id }, o),
    stats: (id, o) => call('stats', { id }, o),
    statsMany: (ids, o) => call('statsMany', { ids }, o),
    resume: (id, o) => call('resume', { id }, o),
    // The agent starts the command and sends its output on the same Data stream; the output waits
    // (flow-controlled) for the follow that comes next, so a run costs one request.
    async exec(id, req, o) {
      const stream = await conn.openData('exec', { id, req: toWireExec(req) }, o)
      const frames = framesOf(stream, conn.agentId)
      try {
        const first = await firstFrame(frames, o?.signal)
        if (!first?.json) throw new SandstormError('unavailable', `agent "${conn.agentId}" ended an exec without starting it`)
        const result = JSON.parse(first.json) as { pid: number }
        started.park(`${id}/${result.pid}`, { stream, frames })
        return result
      } catch (err) {
        finish(stream)
        throw err
      }
    },
    async *follow(id, pid, o) {
      const parked = started.claim(`${id}/${pid}`)
      const { stream, frames } = parked ?? (await follow(id, pid, o))
      const stop = (): void => finish(stream)
      o?.signal?.addEventListener('abort', stop, { once: true })
      try {
        // The exec's stream carries no start event (its pid frame stood for it).
        if (parked) yield { type: 'start', pid } satisfies ExecEvent
        for await (const frame of frames) if (frame.json) yield JSON.parse(frame.json) as ExecEvent
      } finally {
        o?.signal?.removeEventListener('abort', stop)
        finish(stream)
      }
    },
    wait: (id, pid, o) => call('wait', { id, pid }, o),
    processes: (id, o) => call('processes', { id }, o),
    signal: (id, pid, signal, o) => call('signal', { id, pid, signal }, o),
    resizePty: (id, pid, size, o) => call('resizePty', { id, pid, size }, o),
    async writeStdin(id, pid, data, close, o) {
      const stream = await conn.openData('writeStdin', { id, pid, close, hasData: data !== null }, o)
      try {
        await write(stream, { requestId: 0, chunk: data ?? new Uint8Array(), end: true })
        for await (const _ of framesOf(stream, conn.agentId));
      } finally {
        finish(stream)
      }
    },
    async *readFile(id, path, o) {
      const stream = await conn.openData('readFile', { id, path }, o)
      try {
        for await (const frame of framesOf(stream, conn.agentId)) if (frame.chunk && frame.chunk.length > 0) yield frame.chunk
      } finally {
        finish(stream)
      }
    },
    async writeFile(id, path, data, o) {
      const stream = await conn.openData('writeFile', { id, path }, o)
      try {
        const answer = framesOf(stream, conn.agentId)
        // An early refusal (no such sandbox) ends the agent's side while we still send.
        const result = (async () => {
          for await (const _ of answer);
        })()
        result.catch(() => undefined)
        for await (const chunk of data) await write(stream, { requestId: 0, chunk })
        await write(stream, { requestId: 0, end: true })
        await result
      } finally {
        finish(stream)
      }
    },
    updateNetwork: (id, egress, o) => call('updateNetwork', { id, egress }, o),
    async connect(id, port, o) {
      const stream = await conn.openData('connect', { id, port }, o)
      const frames = framesOf(stream, conn.agentId)
      try {
        const first = await firstFrame(frames, o?.signal)
        if (first?.json === undefined) throw new SandstormError('unavailable', `agent "${conn.agentId}" ended a connection without opening it`)
      } catch (err) {
        finish(stream)
        throw err
      }
      return tunnelOf(stream, frames)
    },
    listDir: (id, path, o) => call('listDir', { id, path }, o),
    stat: (id, path, o) => call('stat', { id, path }, o),
    mkdir: (id, path, parents, o) => call('mkdir', { id, path, parents }, o),
    remove: (id, path, recursive, o) => call('remove', { id, path, recursive }, o),
    rename: (id, from, to, o) => call('rename', { id, from, to }, o),
    close: async () => undefined,
    snapshots: {
      take: (sandboxId, req, o) => call('snapshots.take', { sandboxId, req }, o),
      get: (id, o) => call('snapshots.get', { id }, o),
      list: (o) => call('snapshots.list', null, o),
      remove: (id, o) => call('snapshots.remove', { id }, o),
    },
    golden: {
      promote: (name, snapshotId, o, settings) => call('golden.promote', { name, snapshotId, ...(settings?.start ? { start: settings.start } : {}) }, o),
      rollback: (name, o) => call('golden.rollback', { name }, o),
      standingOn: (snapshotId, o) => call('golden.standingOn', { snapshotId }, o),
    },
  }
}
