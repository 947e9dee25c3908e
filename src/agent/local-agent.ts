import { hostname, totalmem, availableParallelism } from 'node:os'
import { join } from 'node:path'
import { defaultSpareDisks, SandstormError, silentLogger, type CallOptions, type Logger, type TemplateStart } from '../shared/index.js'
import type { QemuAccel, RuntimeBackend } from '../runtime/index.js'
import { createTemplateStore, type ResolvedTemplate } from '../templates/index.js'
import { diskImageDeletions } from '../storage/index.js'
import type { AgentApi, AgentCreateRequest, AgentSandbox, AgentSandboxStats } from './agent-api.js'
import { closeRuntimes, createAgentRuntimes, requireRuntime } from './machine-runtimes.js'
import { createMachineSnapshots } from './machine-snapshots.js'
import { runStartCommand } from './start-command.js'
import { planStart } from './machine-start.js'
import { createSandboxProcesses, liveSandbox, type LiveSandbox } from './sandbox-processes.js'
import { createSandboxState, type SandboxRecord } from './sandbox-state.js'
import { createSandboxLayers } from './sandbox-layers.js'
import { createGoldenTemplates, guardSnapshots } from './golden-templates.js'
import { createAgentSnapshots } from './agent-snapshots.js'
import { withinHostSpace } from './host-space.js'
import { createBuildHost } from './build-host.js'
import { createImageBuilds } from './image-builds.js'
import { createHostNetwork, type HostNetwork, type HostNetworkOptions, type SandboxNetworkRecord } from '../network/index.js'
import type { SandboxNetworkSpec } from '../runtime/index.js'

/** Options of createLocalAgent. */
export interface LocalAgentOptions {
  /** State lives in `<dataDir>/agent` and `<dataDir>/runc`. */
  dataDir: string
  /** @default `<dataDir>/templates` */
  templatesDir?: string
  logger?: Logger
  /** The only backend (tests). @default runc, and qemu where qemu-system-x86_64 is installed */
  backend?: RuntimeBackend
  /** Runtime of a create that names none and starts from no saved machine. @default 'runc' (else the only one) */
  defaultRuntime?: string
  /** Accelerator of the qemu runtime. @default 'auto' (probed) */
  accel?: QemuAccel
  /** Layer store driver. @default 'auto': btrfs when the data dir is on btrfs, else overlay */
  storageDriver?: 'overlay' | 'btrfs' | 'auto'
  /** The most one image layer may unpack to; a layer bomb past it fails its build. @default 16 GiB */
  maxLayerBytes?: number
  /** Registries (`host:port`) that image pulls reach over plain HTTP, and may reach on this host (any other on loopback is refused). @default none */
  insecureRegistries?: string[]
  /** Sandbox networking: the address pool, public ranges and upstream resolvers. @default the defaults of createHostNetwork */
  network?: Omit<HostNetworkOptions, 'dataDir' | 'logger'>
  /**
   * Sandbox disks (the quota images of the overlay store) kept formatted and mounted ahead, of
   * the size asked for last: a create with a quota moves one in instead of making one. 0 makes
   * each on the spot. @default defaultSpareDisks (8)
   */
  spareDisks?: number
}

/** Milliseconds rounded to a tenth, for log lines. */
const ms = (n: number): number => Math.round(n * 10) / 10

/**
 * The agent of one host, called in-process by `sandstorm up`. On start it adopts the sandboxes
 * that still run and removes what is left of the others.
 */
export async function createLocalAgent(options: LocalAgentOptions): Promise<AgentApi> {
  const log = options.logger ?? silentLogger()
  const agentId = `agent-${hostname()}`
  const backends = options.backend ? new Map([[options.backend.name, options.backend]]) : createAgentRuntimes({ dataDir: options.dataDir, logger: log, accel: options.accel })
  const defaultRuntime = options.defaultRuntime ?? (backends.has('runc') ? 'runc' : [...backends.keys()][0]!)
  requireRuntime(backends, defaultRuntime, agentId)
  // Sandboxes whose backend saves whole machines snapshot through it; the others through the layer store.
  const machineRuntimes = new Set([...backends.values()].filter((b) => b.saveMachine).map((b) => b.name))
  const layerBackend = [...backends.values()].find((b) => !b.saveMachine) ?? backends.get(defaultRuntime)!
  const machines = createMachineSnapshots(join(options.dataDir, 'machines'), log)
  const templates = createTemplateStore({ dir: options.templatesDir ?? join(options.dataDir, 'templates'), logger: log })
  const state = createSandboxState(join(options.dataDir, 'agent', 'sandboxes'))
  const sandboxes = new Map<string, LiveSandbox>()
  const layers = await createSandboxLayers({ dataDir: options.dataDir, driver: options.storageDriver, spareDisks: options.spareDisks ?? defaultSpareDisks, logger: log })
  // A restore moves a sandbox to a new runtime instance: calls go to whichever instance runs it now.
  for (const [name, b] of backends) backends.set(name, layers.instances.wrap(b))
  const layerGolden = createGoldenTemplates(templates, layers)
  const network: HostNetwork = await createHostNetwork({ ...options.network, dataDir: options.dataDir, logger: log })
  /** The runtime's view of a sandbox's network. */
  const networkSpec = (net: SandboxNetworkRecord | undefined): SandboxNetworkSpec =>
    net
      ? { mode: 'netns', netnsPath: network.netnsPath(net.slot), resolvConf: network.resolvConf, address: net.slot.address, gateway: net.slot.gateway }
      : { mode: 'none' }
  await state.init()
  await adopt()
  await layers.sweep(sandboxes.keys())

  /** Each backend's sandboxes are matched with the records of its runtime; the rest are removed. */
  async function adopt(): Promise<void> {
    const running = new Map<string, { backend: RuntimeBackend; status: string }>()
    for (const b of backends.values()) for (const s of await b.list()) running.set(`${b.name}/${s.id}`, { backend: b, status: s.status })
    const { records, corrupt } = await state.load()
    for (const record of records) {
      const key = `${record.runtime}/${record.id}`
      const found = running.get(key)
      running.delete(key)
      const backend = backends.get(record.runtime)
      if (found && found.status !== 'stopped') {
        sandboxes.set(record.id, liveSandbox(record))
        log.info({ sandboxId: record.id, runtime: record.runtime }, 'adopted a running sandbox')
      } else {
        await backend?.destroy(record.id).catch((err: unknown) => log.error({ sandboxId: record.id, err }, 'cleanup of a stopped sandbox failed'))
        await state.remove(record.id)
        const why = backend ? 'it stopped while the agent was away' : `runtime "${record.runtime}" is no longer offered here`
        log.info({ sandboxId: record.id, runtime: record.runtime }, `removed a sandbox: ${why}`)
      }
    }
    for (const [key, { backend }] of running) {
      const id = key.slice(backend.name.length + 1)
      await backend.destroy(id).catch((err: unknown) => log.error({ sandboxId: id, err }, 'cleanup of an unknown sandbox failed'))
      await state.remove(id)
      log.warn({ sandboxId: id, runtime: backend.name }, 'removed a sandbox the agent has no record of')
    }
    for (const id of corrupt) {
      for (const b of backends.values()) await b.destroy(id).catch((err: unknown) => log.error({ sandboxId: id, err }, 'cleanup of an unknown sandbox failed'))
      await state.remove(id)
      log.warn({ sandboxId: id }, 'removed a sandbox whose record is unreadable')
    }
    // The networks of the sandboxes that run on: their rules are written again; every other slot goes.
    const networks = new Map<string, SandboxNetworkRecord>()
    for (const [id, s] of sandboxes) if (s.record.network) networks.set(id, s.record.network)
    await network.adopt(networks)
  }

  function get(id: string): LiveSandbox {
    const sandbox = sandboxes.get(id)
    if (!sandbox) throw new SandstormError('not_found', `sandbox "${id}" not found`)
    return sandbox
  }

  /** The backend that runs sandbox `id`. */
  function backendOf(id: string): RuntimeBackend {
    return requireRuntime(backends, get(id).record.runtime, agentId)
  }

  const processes = createSandboxProcesses({ get, backendOf })

  /** Runs a template's start command in a new sandbox until it is ready; destroys the sandbox when it fails. */
  async function startOrDestroy(id: string, name: string, start: TemplateStart, call?: CallOptions): Promise<void> {
    const startedAt = performance.now()
    try {
      await runStartCommand(agent, id, { name, start }, call)
    } catch (err) {
      await agent.destroy(id).catch((e: unknown) => log.error({ sandboxId: id, err: e }, 'could not destroy a sandbox whose start command failed'))
      throw err
    }
    log.info({ sandboxId: id, readyMs: Math.round(performance.now() - startedAt) }, 'start command ready')
  }

  const toAgentSandbox = (record: SandboxRecord, status: AgentSandbox['status']): AgentSandbox => ({
    id: record.id,
    template: record.template,
    runtime: record.runtime,
    status,
  })

  const layerSnapshots = layers.snapshots(
    backends.get(layerBackend.name)!,
    (id) => sandboxes.has(id) && !machineRuntimes.has(sandboxes.get(id)!.record.runtime),
    // A restored sandbox's new instance joins the same network namespace: address and rules stay.
    (id) => networkSpec(sandboxes.get(id)?.record.network),
  )
  const { snapshots: allSnapshots, golden } = createAgentSnapshots({
    sandboxes,
    get,
    backendOf,
    machineRuntimes,
    machines,
    templates,
    layerSnapshots,
    layerGolden,
    agent: () => agent,
  })

  /** Ids of the creates under way: not in `sandboxes` until they run. */
  const creating = new Set<string>()

  /** Starts a sandbox over a resolved template: its record, network, writable layer and runtime instance. */
  async function createOver(req: AgentCreateRequest, template: ResolvedTemplate, call?: CallOptions): Promise<AgentSandbox> {
    const plan = await planStart(req, template, { machines, machineRuntimes, defaultRuntime })
    // An image template's Env, USER and WORKDIR are its sandboxes' defaults; the create's own env vars win.
    const image = template.info.config
    const env = image ? { ...image.env, ...req.env } : req.env
    // As in Docker, an image's commands run as its USER in its WORKDIR, else / (not a home an image may lack).
    const execDefaults = image ? { ...(image.user ? { user: image.user } : {}), cwd: image.workingDir || '/' } : undefined
    const backend = requireRuntime(backends, plan.runtime, agentId)
    const machine = machineRuntimes.has(plan.runtime)
    // The writable layer (a spare disk moved in) and the network (a slot) at once: neither needs
    // the other, and each is about a millisecond of waiting on another process. Both are in place
    // before the record is saved, so a crash between the steps leaves a slot that the next start
    // sweeps or a sandbox it adopts. A container's rules are written while it starts (their
    // transaction takes about as long as the rest of the create beside runc): nothing of the
    // sandbox's own runs before create returns, which waits for them. A machine waits for them
    // first, since a clone's saved memory runs the moment it is loaded.
    const joinNetwork = async (): Promise<{ record: SandboxNetworkRecord; ruled: Promise<void> } | undefined> => {
      if (req.network.mode !== 'veth') return undefined
      if (machine) return { record: await network.attach(req.id, req.network.egress), ruled: Promise.resolve() }
      return network.claim(req.id, req.network.egress)
    }
    const [layer, attached] = await Promise.allSettled([
      // A machine's disk is its own image, not a layer: it takes no writable layer.
      machine
        ? { template: req.template, rootfs: { lowerDirs: [...(plan.rootfs ?? template.rootfs).lowerDirs], readonlyBinds: [...(plan.rootfs ?? template.rootfs).readonlyBinds] } }
        : layers.prepare(req, template.rootfs),
      joinNetwork(),
    ])
    /**
     * Settles once the network's rules are in or gone, with their error if they failed: what a
     * failed create undoes must not race their transaction.
     */
    const rulesFailure = async (): Promise<unknown> => (attached.status === 'fulfilled' ? attached.value?.ruled.then(() => undefined, (e: unknown) => e) : undefined)
    /**
     * Undoes what a failed create made of its writable layer and network, side by side; a failure
     * to is logged, and the caller throws the create's own error. The slot taken is gone with the
     * network: the spares are made up again, as after a create.
     */
    const release = async (made: { layer: boolean; net: boolean }): Promise<void> => {
      const [l, n] = await Promise.allSettled([made.layer ? layers.release(req.id) : undefined, made.net ? network.detach(req.id) : undefined])
      if (made.net) network.replenish()
      if (l.status === 'rejected') log.error({ sandboxId: req.id, err: l.reason }, 'could not remove the writable layer of a failed create')
      if (n.status === 'rejected') log.error({ sandboxId: req.id, err: n.reason }, 'could not remove the network of a failed create')
    }
    if (layer.status === 'rejected' || attached.status === 'rejected') {
      await rulesFailure()
      await release({ layer: layer.status === 'fulfilled' && !machine, net: attached.status === 'fulfilled' && attached.value !== undefined })
      throw layer.status === 'rejected' ? layer.reason : (attached as PromiseRejectedResult).reason
    }
    const prepared = layer.value
    const net = attached.value?.record
    const made = { layer: !machine, net: net !== undefined }
    const record: SandboxRecord = {
      id: req.id,
      template: prepared.template,
      runtime: plan.runtime,
      createdAt: new Date().toISOString(),
      ...(plan.machineFrom ? { machineFrom: plan.machineFrom } : {}),
      ...(execDefaults ? { execDefaults } : {}),
      ...(machine ? { rootfs: prepared.rootfs, config: { memoryMiB: req.memoryMiB, cpus: req.cpus, pidsMax: req.pidsMax, diskMiB: req.diskMiB, env } } : {}),
    }
    if (net) record.network = net
    await state.save(record).catch(async (err: unknown) => {
      await rulesFailure()
      await release(made)
      throw err
    })
    const startedAt = performance.now()
    let started = false
    try {
      await backend.create(
        {
          id: req.id,
          rootfs: prepared.rootfs,
          memoryMiB: req.memoryMiB,
          cpus: req.cpus,
          pidsMax: req.pidsMax,
          ...(machine && req.diskMiB > 0 ? { diskMiB: req.diskMiB } : {}),
          env,
          hostname: 'sandbox',
          network: networkSpec(net),
          ...(plan.machine ? { machine: plan.machine } : {}),
        },
        call,
      )
      started = true
      await attached.value?.ruled
    } catch (err) {
      // The rules' failure is the cause when both failed: runc cannot join the namespace that their failure removed.
      const rulesErr = await rulesFailure()
      // A sandbox whose rules failed is removed before anything of its own ran (a failed start removed its own).
      if (started) await backend.destroy(req.id).catch((e: unknown) => log.error({ sandboxId: req.id, err: e }, 'could not remove the sandbox of a failed create'))
      await release(made)
      await state.remove(req.id)
      throw rulesErr ?? err
    }
    sandboxes.set(req.id, liveSandbox(record))
    if (net) network.replenish()
    const startMs = Math.round(performance.now() - startedAt)
    log.info({ sandboxId: req.id, runtime: plan.runtime, clone: plan.machine !== undefined, start: plan.start, startMs, reason: plan.startReason }, 'sandbox started')
    // A machine clone's saved memory has the template's start command running already.
    if (template.info.start && !plan.machine) {
      // A pool's fill (a kernel booting, say) yields the CPU to sandboxes in use meanwhile.
      const yieldCpu = req.background === true && backend.setCpuWeight !== undefined
      if (yieldCpu) backend.setCpuWeight!(req.id, 'low')
      await startOrDestroy(req.id, template.info.name, template.info.start, call)
      if (yieldCpu) backend.setCpuWeight!(req.id, 'normal')
    }
    return { ...toAgentSandbox(record, 'running'), ...(plan.start ? { start: plan.start } : {}), ...(plan.startReason ? { startReason: plan.startReason } : {}) }
  }

  const agent: AgentApi = {
    info: () => ({
      id: agentId,
      hostname: hostname(),
      runtimes: [...backends.keys()],
      cpus: availableParallelism(),
      memoryMiB: Math.floor(totalmem() / 1024 / 1024),
    }),

    templates: () => templates.list(),

    async create(req, call) {
      // Before anything is touched: a second create of a live id would take its writable dir and network.
      if (sandboxes.has(req.id) || creating.has(req.id)) throw new SandstormError('already_exists', `sandbox "${req.id}" already exists on this host`)
      creating.add(req.id)
      try {
        return await createOver(req, await templates.resolve(req.template), call)
      } finally {
        creating.delete(req.id)
      }
    },

    async destroy(id: string): Promise<void> {
      const sandbox = sandboxes.get(id)
      // Unknown here (gone already, or never made): every backend makes sure nothing of it is left.
      const owners = sandbox ? [backendOf(id)] : [...backends.values()]
      const t0 = performance.now()
      // Forgotten only once the backend removed it, so that a failed destroy can be retried.
      for (const backend of owners) await backend.destroy(id)
      sandboxes.delete(id)
      const t1 = performance.now()
      // With nothing left running, the disk and the network are independent, and each mostly waits
      // on the kernel (an ext4 unmount's flush, a veth's RCU grace periods): side by side, the
      // destroy takes the longer of the two, not their sum. Both run to the end even when one fails.
      const timedStep = async (step: () => Promise<void>): Promise<number> => {
        const start = performance.now()
        await step()
        return ms(performance.now() - start)
      }
      const [disk, net] = await Promise.allSettled([timedStep(() => layers.release(id)), timedStep(() => network.detach(id))])
      if (disk.status === 'rejected') throw disk.reason
      if (net.status === 'rejected') throw net.reason
      const t2 = performance.now()
      await state.remove(id)
      // Each step's time, for finding where a slow kill goes.
      if (sandbox) log.info({ sandboxId: id, runtimeMs: ms(t1 - t0), layersMs: disk.value, networkMs: net.value, releaseMs: ms(t2 - t1), recordMs: ms(performance.now() - t2) }, 'destroyed')
    },

    async list(call?: CallOptions): Promise<AgentSandbox[]> {
      const status = new Map<string, AgentSandbox['status']>()
      for (const b of backends.values()) for (const s of await b.list(call)) status.set(`${b.name}/${s.id}`, s.status)
      return [...sandboxes.values()].map((s) => toAgentSandbox(s.record, status.get(`${s.record.runtime}/${s.record.id}`) ?? 'stopped'))
    },

    // In turn with the sandbox's snapshots and restores, which rely on its frozen state holding.
    pause: (id, call) => layerSnapshots.inTurn(id, () => backendOf(id).pause(id, call)),
    async stats(id, call) {
      // A machine's disk is its own image (the backend counts it); a container's is its writable layer.
      const machine = machineRuntimes.has(get(id).record.runtime)
      const [s, disk] = await Promise.all([backendOf(id).stats(id, call), machine ? null : layers.usage(id)])
      const own = s.disk ?? disk
      return { memoryBytes: s.memoryBytes, cpuNanos: s.cpuNanos, pids: s.pids, diskUsedBytes: own?.usedBytes ?? 0, diskLimitBytes: own?.limitBytes ?? 0 }
    },
    async statsMany(ids, call) {
      // Cgroup files and a statfs for each (btrfs asks its tool): nothing wakes a paused sandbox.
      const measured = await Promise.all(ids.map(async (id) => [id, await agent.stats(id, call).catch(() => null)] as const))
      return Object.fromEntries(measured.filter((m): m is [string, AgentSandboxStats] => m[1] !== null))
    },
    resume: (id, call) => layerSnapshots.inTurn(id, () => backendOf(id).resume(id, call)),

    ...processes,

    async updateNetwork(id, egress) {
      const sandbox = get(id)
      if (!sandbox.record.network) throw new SandstormError('failed_precondition', `sandbox "${id}" was created with network "none": it has no network device to set a policy on`)
      await network.update(id, egress)
      sandbox.record.network = { ...sandbox.record.network, egress }
      await state.save(sandbox.record)
    },
    connect: (id, port, call) => {
      get(id)
      return network.connect(id, port, call)
    },

    readFile: (id, path, call) => backendOf(id).readFile(id, path, call),
    // Sandbox disks are sparse images under <dataDir>/storage: an upload must fit in what the host has free.
    writeFile: async (id, path, data, call) => backendOf(id).writeFile(id, path, await withinHostSpace(join(options.dataDir, 'storage'), data), call),
    listDir: (id, path, call) => backendOf(id).listDir(id, path, call),
    stat: (id, path, call) => backendOf(id).stat(id, path, call),
    mkdir: (id, path, parents, call) => backendOf(id).mkdir(id, path, parents, call),
    remove: (id, path, recursive, call) => backendOf(id).remove(id, path, recursive, call),
    rename: (id, from, to, call) => backendOf(id).rename(id, from, to, call),

    async close(): Promise<void> {
      await layers.instances.drain()
      await closeRuntimes(backends.values())
      await network.close()
      // Spare disks are unmounted and deleted.
      await layers.close()
      // The disk images of destroyed sandboxes are deleted after their destroy answered.
      await diskImageDeletions()
      sandboxes.clear()
    },

    snapshots: guardSnapshots(allSnapshots, golden),
    golden,
    get images() {
      return images
    },
  }
  const images = createImageBuilds({
    templates,
    ...(options.maxLayerBytes ? { maxLayerBytes: options.maxLayerBytes } : {}),
    host: createBuildHost({ templates, agent, createOver, snapshots: allSnapshots, layers, insecureRegistries: options.insecureRegistries ?? [], ...(options.maxLayerBytes ? { maxLayerBytes: options.maxLayerBytes } : {}) }),
    logger: log,
    async inUse(name) {
      const running = [...sandboxes.values()].filter((s) => s.record.template === name).map((s) => s.record.id)
      if (running.length > 0) return `sandbox${running.length === 1 ? '' : 'es'} ${running.slice(0, 5).join(', ')} ${running.length === 1 ? 'runs' : 'run'} on it`
      const snaps = (await allSnapshots.list()).filter((s) => s.template === name).map((s) => s.id)
      if (snaps.length > 0) return `snapshot${snaps.length === 1 ? '' : 's'} ${snaps.slice(0, 5).join(', ')} ${snaps.length === 1 ? 'stands' : 'stand'} on it`
      return null
    },
  })
  return agent
}
