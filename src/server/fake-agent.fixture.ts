/**
 * An in-memory AgentApi for the server's unit tests (never used outside tests). Commands are
 * scripted: a shell string such as `echo hi` prints, `exit 3` ends with 3, `wait` runs until it is
 * signalled or `finish()`ed, and `cat` echoes its stdin once stdin closes.
 */
import { EventEmitter } from 'node:events'
import { connect as connectTcp, type Socket } from 'node:net'
import type { AgentApi, AgentCreateRequest, AgentExecRequest, AgentSandbox, AgentSnapshot, AgentSnapshotApi } from '../agent/index.js'
import { SandstormError } from '../shared/index.js'
import type { CallOptions, EntryInfo, ExecEvent, ProcessInfo, ProcessResult, TemplateInfo } from '../shared/index.js'

/** A process of the fake. */
export interface FakeProcess {
  pid: number
  argv: string[]
  stdin: Uint8Array[]
  events: ExecEvent[]
  result: ProcessResult | null
  startedAt: string
  wake: Set<() => void>
}

/** A sandbox of the fake: its files by absolute path, its directories, its processes. */
export interface FakeSandbox {
  sandbox: AgentSandbox
  request: AgentCreateRequest | null
  files: Map<string, Uint8Array>
  dirs: Set<string>
  processes: Map<number, FakeProcess>
  /** Its ports that a test serves: sandbox port -> a local TCP port that connect() reaches. */
  ports: Map<number, number>
}

/** The fake agent and the hooks that tests drive it with. */
export interface FakeAgent extends AgentApi {
  sandboxes: Map<string, FakeSandbox>
  /** Emits 'created' (id), 'destroyed' (id), 'follow-ended' ({ id, pid, aborted }), 'exec' ({ id, pid }). */
  events: EventEmitter
  /** The next create fails with this error. */
  failNextCreate: SandstormError | null
  /** Calls of each method, by name. */
  calls: Map<string, number>
  /** Adds a sandbox as if it had been left running by an earlier server. */
  plant(id: string, status?: AgentSandbox['status']): FakeSandbox
  /** Prints on a running process. */
  print(id: string, pid: number, stream: 'stdout' | 'stderr', text: string): void
  /** Ends a running process with this exit code. */
  finish(id: string, pid: number, exitCode: number): void
  /** Resolves with the id of the next destroyed sandbox that matches. */
  destroyed(id: string): Promise<void>
}

const templates: TemplateInfo[] = [
  { name: 'debian', version: 1, description: 'Debian 12', sizeBytes: 1, buildMs: 1, builtAt: '2024-01-01T00:00:00.000Z', defaults: { memoryMiB: 512, cpus: 1 } },
  { name: 'host', version: 1, description: "the host's /usr", sizeBytes: 1, buildMs: 1, builtAt: '2024-01-01T00:00:00.000Z', defaults: { memoryMiB: 256, cpus: 0.5 } },
]

/** Creates an empty fake agent; with `snapshots`, it takes (empty) snapshots of its sandboxes too. */
export function createFakeAgent(options: { snapshots?: boolean } = {}): FakeAgent {
  const sandboxes = new Map<string, FakeSandbox>()
  const events = new EventEmitter()
  const calls = new Map<string, number>()
  let nextPid = 100

  const count = (name: string): void => void calls.set(name, (calls.get(name) ?? 0) + 1)
  const box = (id: string): FakeSandbox => {
    const found = sandboxes.get(id)
    if (!found) throw new SandstormError('not_found', `sandbox "${id}" not found`)
    return found
  }
  const proc = (id: string, pid: number): FakeProcess => {
    const found = box(id).processes.get(pid)
    if (!found) throw new SandstormError('not_found', `process ${pid} not found in sandbox "${id}"`)
    return found
  }
  const push = (p: FakeProcess, event: ExecEvent): void => {
    p.events.push(event)
    for (const wake of p.wake) wake()
  }
  const end = (p: FakeProcess, exitCode: number, signal: string | null = null): void => {
    if (p.result) return
    p.result = { exitCode, signal, timedOut: false, oomKilled: false, durationMs: 1 }
    push(p, { type: 'end', result: p.result })
  }
  const base64 = (text: string): string => Buffer.from(text).toString('base64')
  const plant = (id: string, status: AgentSandbox['status'] = 'running', request: AgentCreateRequest | null = null): FakeSandbox => {
    const sandbox: FakeSandbox = {
      sandbox: { id, template: request?.template ?? 'debian', runtime: 'runc', status },
      request,
      files: new Map(),
      dirs: new Set(['/', '/tmp']),
      processes: new Map(),
      ports: new Map(),
    }
    sandboxes.set(id, sandbox)
    return sandbox
  }
  const entry = (path: string, type: EntryInfo['type'], size: number): EntryInfo => ({
    name: path.split('/').at(-1) || '/',
    path,
    type,
    size,
    mode: type === 'dir' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    modifiedAt: '2024-01-01T00:00:00.000Z',
  })

  const agent: FakeAgent = {
    sandboxes,
    events,
    calls,
    failNextCreate: null,
    plant,
    info: () => ({ id: 'fake', hostname: 'fake', runtimes: ['runc'], cpus: 2, memoryMiB: 4096 }),
    async templates() {
      count('templates')
      return templates
    },
    async create(req) {
      count('create')
      const failure = agent.failNextCreate
      agent.failNextCreate = null
      if (failure) throw failure
      const created = plant(req.id, 'running', req)
      events.emit('created', req.id)
      return created.sandbox
    },
    async destroy(id) {
      count('destroy')
      const found = sandboxes.get(id)
      if (!found) return
      for (const p of found.processes.values()) end(p, 137, 'SIGKILL')
      sandboxes.delete(id)
      events.emit('destroyed', id)
    },
    async list() {
      count('list')
      return [...sandboxes.values()].map((s) => s.sandbox)
    },
    async pause(id) {
      box(id).sandbox.status = 'paused'
    },
    async resume(id) {
      box(id).sandbox.status = 'running'
    },
    async stats(id) {
      box(id)
      return { memoryBytes: 1 << 20, cpuNanos: 1e6, pids: 1, diskUsedBytes: 0, diskLimitBytes: 0 }
    },
    async statsMany(ids) {
      count('statsMany')
      return Object.fromEntries(ids.filter((id) => sandboxes.has(id)).map((id) => [id, { memoryBytes: 1 << 20, cpuNanos: 1e6, pids: 1, diskUsedBytes: 0, diskLimitBytes: 0 }]))
    },
    async exec(id, req: AgentExecRequest, options: CallOptions = {}) {
      count('exec')
      const sandbox = box(id)
      const pid = nextPid++
      const p: FakeProcess = { pid, argv: req.argv, stdin: req.stdin ? [req.stdin] : [], events: [], result: null, startedAt: new Date().toISOString(), wake: new Set() }
      sandbox.processes.set(pid, p)
      push(p, { type: 'start', pid })
      const script = req.argv[0] === '/bin/sh' && req.argv[1] === '-c' ? (req.argv[2] ?? '') : req.argv.join(' ')
      const [word, ...args] = script.split(' ')
      if (word === 'echo') {
        push(p, { type: 'stdout', data: base64(`${args.join(' ')}\n`) })
        end(p, 0)
      } else if (word === 'exit') {
        end(p, Number(args[0] ?? 0))
      } else if (word === 'cat' && !req.keepStdin) {
        push(p, { type: 'stdout', data: Buffer.concat(p.stdin).toString('base64') })
        end(p, 0)
      } else if (word !== 'wait' && word !== 'cat') {
        push(p, { type: 'stderr', data: base64(`${word}: not found\n`) })
        end(p, 127)
      }
      // As the runc backend does, the exec's signal kills the process for as long as it runs.
      options.signal?.addEventListener('abort', () => end(p, 137, 'SIGKILL'), { once: true })
      events.emit('exec', { id, pid })
      return { pid }
    },
    async *follow(id, pid, options: CallOptions = {}) {
      count('follow')
      const p = proc(id, pid)
      const signal = options.signal
      let next = 0
      try {
        for (;;) {
          while (next < p.events.length) yield p.events[next++]!
          if (p.result) return
          signal?.throwIfAborted()
          await new Promise<void>((resolve, reject) => {
            const wake = (): void => {
              p.wake.delete(wake)
              signal?.removeEventListener('abort', onAbort)
              resolve()
            }
            const onAbort = (): void => {
              p.wake.delete(wake)
              reject(signal!.reason)
            }
            p.wake.add(wake)
            signal?.addEventListener('abort', onAbort, { once: true })
          })
        }
      } finally {
        events.emit('follow-ended', { id, pid, aborted: signal?.aborted === true })
      }
    },
    async wait(id, pid, options = {}) {
      for await (const event of agent.follow(id, pid, options)) if (event.type === 'end') return event.result
      throw new SandstormError('internal', `process ${pid} ended without a result`)
    },
    async processes(id) {
      return [...box(id).processes.values()].map((p): ProcessInfo => ({
        pid: p.pid,
        argv: p.argv,
        cwd: '/',
        startedAt: p.startedAt,
        running: p.result === null,
        result: p.result,
      }))
    },
    async signal(id, pid, signal) {
      const p = proc(id, pid)
      const numbers: Record<string, number> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGHUP: 1 }
      end(p, 128 + (numbers[signal] ?? 15), signal)
    },
    async resizePty(id, pid) {
      proc(id, pid)
      throw new SandstormError('failed_precondition', `process ${pid} has no terminal`)
    },
    async writeStdin(id, pid, data, close) {
      const p = proc(id, pid)
      if (data) p.stdin.push(data)
      if (close && p.argv.join(' ').endsWith('cat')) {
        push(p, { type: 'stdout', data: Buffer.concat(p.stdin).toString('base64') })
        end(p, 0)
      }
    },
    async updateNetwork(id, egress) {
      count('updateNetwork')
      const sb = box(id)
      if (!sb.request || sb.request.network.mode === 'none') throw new SandstormError('failed_precondition', `sandbox "${id}" was created with network "none"`)
      sb.request = { ...sb.request, network: { mode: 'veth', egress } }
    },
    async connect(id, port) {
      count('connect')
      const local = box(id).ports.get(port)
      if (local === undefined) throw new SandstormError('unavailable', `nothing listens on port ${port} in sandbox "${id}"`)
      return new Promise<Socket>((resolve, reject) => {
        const socket = connectTcp(local, '127.0.0.1', () => resolve(socket))
        socket.once('error', reject)
      })
    },
    async *readFile(id, path) {
      const data = box(id).files.get(path)
      if (!data) throw new SandstormError('not_found', `${path}: expected an existing file, got nothing there`)
      // Two chunks, to show the body is streamed as it comes.
      yield data.subarray(0, Math.floor(data.length / 2))
      yield data.subarray(Math.floor(data.length / 2))
    },
    async writeFile(id, path, data) {
      const sandbox = box(id)
      const chunks: Uint8Array[] = []
      // Kept aside until the data ends: a failed write leaves nothing, as the real agent must.
      for await (const chunk of data) chunks.push(chunk)
      sandbox.files.set(path, Buffer.concat(chunks))
    },
    async listDir(id, path) {
      const sandbox = box(id)
      if (!sandbox.dirs.has(path)) throw new SandstormError('not_found', `${path}: expected a directory, got nothing there`)
      const prefix = path === '/' ? '/' : `${path}/`
      const inside = (p: string): boolean => p.startsWith(prefix) && p !== path && !p.slice(prefix.length).includes('/')
      return [
        ...[...sandbox.dirs].filter(inside).map((p) => entry(p, 'dir', 4096)),
        ...[...sandbox.files].filter(([p]) => inside(p)).map(([p, d]) => entry(p, 'file', d.length)),
      ]
    },
    async stat(id, path) {
      const sandbox = box(id)
      if (sandbox.dirs.has(path)) return entry(path, 'dir', 4096)
      const data = sandbox.files.get(path)
      if (!data) throw new SandstormError('not_found', `${path}: expected an existing path, got nothing there`)
      return entry(path, 'file', data.length)
    },
    async mkdir(id, path) {
      box(id).dirs.add(path)
    },
    async remove(id, path) {
      const sandbox = box(id)
      if (!sandbox.files.delete(path) && !sandbox.dirs.delete(path)) {
        throw new SandstormError('not_found', `${path}: expected an existing path, got nothing there`)
      }
    },
    async rename(id, from, to) {
      const sandbox = box(id)
      const data = sandbox.files.get(from)
      if (!data) throw new SandstormError('not_found', `${from}: expected an existing file, got nothing there`)
      sandbox.files.delete(from)
      sandbox.files.set(to, data)
    },
    print(id, pid, stream, text) {
      push(proc(id, pid), { type: stream, data: base64(text) })
    },
    finish(id, pid, exitCode) {
      end(proc(id, pid), exitCode)
    },
    destroyed(id) {
      return new Promise((resolve) => {
        const listener = (gone: string): void => {
          if (gone !== id) return
          events.off('destroyed', listener)
          resolve()
        }
        events.on('destroyed', listener)
      })
    },
    async close() {},
  }
  return options.snapshots ? Object.assign(agent, { snapshots: fakeSnapshots(box) }) : agent
}

/** Snapshots that hold nothing but their record. */
function fakeSnapshots(box: (id: string) => FakeSandbox): AgentSnapshotApi {
  const held = new Map<string, AgentSnapshot>()
  let next = 0
  const find = (id: string): AgentSnapshot => {
    const found = held.get(id)
    if (!found) throw new SandstormError('not_found', `snapshot "${id}" not found`)
    return found
  }
  return {
    async take(sandboxId, req) {
      const sandbox = box(sandboxId)
      const id = `snap-${String(next++).padStart(16, '0')}`
      const snapshot: AgentSnapshot = {
        id,
        parentId: null,
        sandboxId,
        template: sandbox.sandbox.template,
        label: req.label ?? '',
        driver: 'fake',
        depth: 1,
        memoryMiB: 512,
        cpus: 1,
        pidsMax: 256,
        diskMiB: 0,
        cwd: '/',
        createdAt: new Date().toISOString(),
        env: { ...(sandbox.request?.env ?? {}) },
      }
      held.set(id, snapshot)
      return snapshot
    },
    get: async (id) => find(id),
    list: async () => [...held.values()],
    async remove(id) {
      find(id)
      held.delete(id)
    },
  }
}
