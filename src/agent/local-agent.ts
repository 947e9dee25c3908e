import { hostname, totalmem, availableParallelism } from 'node:os'
import { join } from 'node:path'
import { SandstormError, silentLogger, type CallOptions, type Logger } from '../shared/index.js'
import { createRuncBackend, type RuntimeBackend } from '../runtime/index.js'
import { createTemplateStore } from '../templates/index.js'
import type { AgentApi, AgentCreateRequest, AgentExecRequest, AgentSandbox } from './agent-api.js'
import { ProcessRecord } from './process-record.js'
import { createSandboxState, type SandboxRecord } from './sandbox-state.js'
import { createSandboxLayers } from './sandbox-layers.js'
import { createGoldenTemplates, guardSnapshots } from './golden-templates.js'

/** Options of createLocalAgent. */
export interface LocalAgentOptions {
  /** State lives in `<dataDir>/agent` and `<dataDir>/runc`. */
  dataDir: string
  /** @default `<dataDir>/templates` */
  templatesDir?: string
  logger?: Logger
  /** @default the runc backend */
  backend?: RuntimeBackend
  /** Layer store driver. @default 'auto': btrfs when the data dir is on btrfs, else overlay */
  storageDriver?: 'overlay' | 'btrfs' | 'auto'
}

/** Finished processes kept per sandbox for listing and late followers. */
const keptFinishedProcesses = 64

interface LiveSandbox {
  record: SandboxRecord
  processes: Map<number, ProcessRecord>
  /** uid/gid/home per user name, resolved inside the sandbox once. */
  users: Map<string, { uid: number; gid: number; home: string }>
}

/**
 * The agent of one host, called in-process by `sandstorm up`. On start it adopts the sandboxes
 * that still run and removes what is left of the others.
 */
export async function createLocalAgent(options: LocalAgentOptions): Promise<AgentApi> {
  const log = options.logger ?? silentLogger()
  const backend =
    options.backend ??
    createRuncBackend({ stateRoot: join(options.dataDir, 'runc'), sandboxesDir: join(options.dataDir, 'sandboxes'), logger: log })
  const templates = createTemplateStore({ dir: options.templatesDir ?? join(options.dataDir, 'templates'), logger: log })
  const state = createSandboxState(join(options.dataDir, 'agent', 'sandboxes'))
  const sandboxes = new Map<string, LiveSandbox>()
  const layers = await createSandboxLayers({ dataDir: options.dataDir, driver: options.storageDriver, logger: log })
  const golden = createGoldenTemplates(templates, layers)
  await state.init()
  await adopt()
  await layers.sweep(sandboxes.keys())

  async function adopt(): Promise<void> {
    const running = new Map((await backend.list()).map((s) => [s.id, s]))
    const { records, corrupt } = await state.load()
    for (const record of records) {
      const found = running.get(record.id)
      running.delete(record.id)
      if (found && found.status !== 'stopped') {
        sandboxes.set(record.id, { record, processes: new Map(), users: new Map() })
        log.info({ sandboxId: record.id }, 'adopted a running sandbox')
      } else {
        await backend.destroy(record.id).catch((err: unknown) => log.error({ sandboxId: record.id, err }, 'cleanup of a stopped sandbox failed'))
        await state.remove(record.id)
        log.info({ sandboxId: record.id }, 'removed a sandbox that stopped while the agent was away')
      }
    }
    for (const id of [...running.keys(), ...corrupt]) {
      await backend.destroy(id).catch((err: unknown) => log.error({ sandboxId: id, err }, 'cleanup of an unknown sandbox failed'))
      await state.remove(id)
      log.warn({ sandboxId: id }, 'removed a sandbox the agent has no record of')
    }
  }

  function get(id: string): LiveSandbox {
    const sandbox = sandboxes.get(id)
    if (!sandbox) throw new SandstormError('not_found', `sandbox "${id}" not found`)
    return sandbox
  }

  function proc(id: string, pid: number): ProcessRecord {
    const record = get(id).processes.get(pid)
    if (!record) throw new SandstormError('not_found', `process ${pid} not found in sandbox "${id}"`)
    return record
  }

  async function resolveUser(id: string, user: string, call?: CallOptions) {
    if (/^[0-9]+$/.test(user)) return { uid: Number(user), gid: Number(user), home: '/' }
    const cache = get(id).users
    let found = cache.get(user)
    if (!found) {
      found = await backend.resolveUser(id, user, call)
      cache.set(user, found)
    }
    return found
  }

  function forget(sandbox: LiveSandbox): void {
    const finished = [...sandbox.processes.values()].filter((p) => p.result !== null)
    for (const p of finished.slice(0, Math.max(0, finished.length - keptFinishedProcesses))) sandbox.processes.delete(p.pid)
  }

  const toAgentSandbox = (record: SandboxRecord, status: AgentSandbox['status']): AgentSandbox => ({
    id: record.id,
    template: record.template,
    runtime: record.runtime,
    status,
  })

  const agentId = `agent-${hostname()}`
  const agent: AgentApi = {
    info: () => ({
      id: agentId,
      hostname: hostname(),
      runtimes: [backend.name],
      cpus: availableParallelism(),
      memoryMiB: Math.floor(totalmem() / 1024 / 1024),
    }),

    templates: () => templates.list(),

    async create(req: AgentCreateRequest, call?: CallOptions): Promise<AgentSandbox> {
      const template = await templates.resolve(req.template)
      const prepared = await layers.prepare(req, template.rootfs)
      const record: SandboxRecord = { id: req.id, template: prepared.template, runtime: backend.name, createdAt: new Date().toISOString() }
      // The record is written first, so a crash between the two steps leaves a sandbox that adoption finds.
      await state.save(record).catch(async (err: unknown) => {
        await layers.release(req.id)
        throw err
      })
      try {
        await backend.create(
          { id: req.id, rootfs: prepared.rootfs, memoryMiB: req.memoryMiB, cpus: req.cpus, pidsMax: req.pidsMax, env: req.env, hostname: 'sandbox', network: req.network },
          call,
        )
      } catch (err) {
        await layers.release(req.id).catch((e: unknown) => log.error({ sandboxId: req.id, err: e }, 'could not remove the writable layer of a failed create'))
        await state.remove(req.id)
        throw err
      }
      sandboxes.set(req.id, { record, processes: new Map(), users: new Map() })
      return toAgentSandbox(record, 'running')
    },

    async destroy(id: string): Promise<void> {
      const sandbox = sandboxes.get(id)
      // Forgotten only once the backend removed it, so that a failed destroy can be retried.
      await backend.destroy(id)
      sandboxes.delete(id)
      await layers.release(id)
      await state.remove(id)
      if (sandbox) log.info({ sandboxId: id }, 'destroyed')
    },

    async list(call?: CallOptions): Promise<AgentSandbox[]> {
      const status = new Map((await backend.list(call)).map((s) => [s.id, s.status]))
      return [...sandboxes.values()].map((s) => toAgentSandbox(s.record, status.get(s.record.id) ?? 'stopped'))
    },

    pause: (id, call) => (get(id), backend.pause(id, call)),
    resume: (id, call) => (get(id), backend.resume(id, call)),

    async exec(id: string, req: AgentExecRequest, call?: CallOptions): Promise<{ pid: number }> {
      const sandbox = get(id)
      const user = await resolveUser(id, req.user ?? 'root', call)
      const cwd = req.cwd ?? user.home
      let record: ProcessRecord | undefined
      const early: [('stdout' | 'stderr'), Uint8Array][] = []
      // The caller's signal cancels the start only (agent-api.ts): the backend ties a process's
      // life to the signal it gets, so it gets one that stops following the caller's once started.
      const start = new AbortController()
      const cancelStart = () => start.abort(call?.signal?.reason)
      if (call?.signal?.aborted) cancelStart()
      call?.signal?.addEventListener('abort', cancelStart, { once: true })
      const process = await backend
        .exec(
          id,
          { argv: req.argv, env: { HOME: user.home, ...req.env }, cwd, uid: user.uid, gid: user.gid, timeoutMs: req.timeoutMs },
          {
            onStdout: (c) => (record ? record.output('stdout', c) : early.push(['stdout', c])),
            onStderr: (c) => (record ? record.output('stderr', c) : early.push(['stderr', c])),
          },
          { signal: start.signal },
        )
        .finally(() => call?.signal?.removeEventListener('abort', cancelStart))
      record = new ProcessRecord(process.pid, req.argv, cwd, process)
      for (const [type, chunk] of early) record.output(type, chunk)
      forget(sandbox)
      sandbox.processes.set(process.pid, record)
      if (req.stdin) await process.writeStdin(req.stdin)
      if (!req.keepStdin) process.closeStdin()
      return { pid: process.pid }
    },

    follow: (id, pid, call) => proc(id, pid).follow(call?.signal),
    wait: (id, pid) => proc(id, pid).process.result,
    processes: async (id) => [...get(id).processes.values()].map((p) => p.info()),
    signal: (id, pid, signal) => proc(id, pid).process.kill(signal),

    async writeStdin(id: string, pid: number, data: Uint8Array | null, close: boolean): Promise<void> {
      const record = proc(id, pid)
      if (record.result) throw new SandstormError('failed_precondition', `process ${pid} has already ended`)
      if (data) await record.process.writeStdin(data)
      if (close) record.process.closeStdin()
    },

    readFile: (id, path, call) => (get(id), backend.readFile(id, path, call)),
    writeFile: (id, path, data, call) => (get(id), backend.writeFile(id, path, data, call)),
    listDir: (id, path, call) => (get(id), backend.listDir(id, path, call)),
    stat: (id, path, call) => (get(id), backend.stat(id, path, call)),
    mkdir: (id, path, parents, call) => (get(id), backend.mkdir(id, path, parents, call)),
    remove: (id, path, recursive, call) => (get(id), backend.remove(id, path, recursive, call)),
    rename: (id, from, to, call) => (get(id), backend.rename(id, from, to, call)),

    async close(): Promise<void> {
      sandboxes.clear()
    },

    snapshots: guardSnapshots(layers.snapshots(backend, (id) => sandboxes.has(id)), golden),
    golden,
  }
  return agent
}
