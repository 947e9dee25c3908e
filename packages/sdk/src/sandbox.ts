/** `Sandbox`: create, connect to, list and kill sandboxes; an instance holds its commands and files. */
import { maxListLimit } from './wire/list-limits.js'
import type { CreateSandboxRequest, NetworkOptions, SandboxIngress, SandboxStart, ForkRequest, NetworkUpdateRequest, RuntimeName, SandboxInfo, SandboxListOrder, SandboxMetrics, SandboxState, SnapshotInfo } from './wire/index.js'
import { Commands } from './commands.js'
import { overlayConnection, resolveConnection, type Connection, type ConnectionOptions } from './connection.js'
import { InvalidArgumentError, NotFoundError } from './errors.js'
import { Files } from './files.js'
import { createApiClient, type ApiClient } from './http-client.js'
import { Pty } from './pty.js'
import type { SandboxContext } from './sandbox-context.js'

/** Options of `Sandbox.create`. */
export interface SandboxCreateOptions extends ConnectionOptions {
  /** Memory limit. @default the template's */
  memoryMiB?: number
  /** CPU limit (fractions allowed). @default the template's */
  cpus?: number
  /** Most processes at once. @default the server's */
  pidsMax?: number
  /** Disk quota: the most it may write to its root filesystem (past it, ENOSPC). @default the template's, else the server's */
  diskMiB?: number
  /** Destroyed this long after creation unless extended with setTimeout. @default the server's */
  timeoutMs?: number
  /** Labels to find it by with `Sandbox.list({ labels })`. */
  labels?: Record<string, string>
  /** Environment every command gets. */
  env?: Record<string, string>
  /**
   * 'none' for only lo; else the egress policy (E2B's rules: `allowOut` of addresses, CIDRs,
   * domains and `*.domain` wins over `denyOut`; domains need `denyOut: ['0.0.0.0/0']`) and how its
   * ports are reached. @default the server's default: the public internet, ports open
   */
  network?: 'none' | NetworkOptions
  /** 'runc' (a container) or 'qemu' (a microVM with its own kernel). @default the server's */
  runtime?: RuntimeName
}

/** A sandbox's network, as a create gives it (the wire's NetworkOptions). */
export type { NetworkOptions as SandboxNetworkOptions }

/** Options of `kill`. */
export interface SandboxKillOptions extends ConnectionOptions {
  /**
   * false: resolve once the server has marked the sandbox for removal (it then destroys it on its
   * own, and it leaves the list once gone), instead of once it is destroyed. @default true
   */
  wait?: boolean
}

/** Options of `Sandbox.fork`. */
export interface SandboxForkOptions extends ConnectionOptions {
  /** How many sandboxes to start from the snapshot. @default 1 */
  count?: number
  /** Lifetime of each. @default the server's */
  timeoutMs?: number
  labels?: Record<string, string>
  /** The network of each, as a create's. @default the server's default */
  network?: 'none' | NetworkOptions
}

/** Options of `Sandbox.list` and `Sandbox.listPage`: every filter given must match. */
export interface SandboxListOptions extends ConnectionOptions {
  /** Only sandboxes that have all of these labels. */
  labels?: Record<string, string>
  /** Only sandboxes in this state, or in one of these. */
  state?: SandboxState | SandboxState[]
  /** Only sandboxes of this template. */
  template?: string
  /** Only sandboxes started at or after this time. */
  startedAfter?: Date
  /** Only sandboxes started at or before this time. */
  startedBefore?: Date
  /** By start time. @default 'asc' (oldest first) */
  order?: SandboxListOrder
}

/** Options of `Sandbox.listPage`. */
export interface SandboxListPageOptions extends SandboxListOptions {
  /** Sandboxes per page (1..1000). @default 1000 */
  limit?: number
  /** The `nextToken` of the previous page; the first page without it. */
  nextToken?: string
}

/** One page of a list, and the token of the next page when there is one. */
export interface SandboxListPage {
  sandboxes: SandboxInfo[]
  nextToken?: string
}

/** Options of `getMetrics`: the range of the series. */
export interface SandboxMetricsOptions extends ConnectionOptions {
  /** @default the sandbox's start */
  start?: Date
  /** @default now */
  end?: Date
}

const sandboxesPath = '/v1/sandboxes'

/** Each sandbox's connection, for the Node entry's port functions (kept off the public class). */
const connections = new WeakMap<Sandbox, Connection>()

/** @internal A sandbox's connection with a call's options laid over it. */
export function connectionOf(sandbox: Sandbox, options: ConnectionOptions = {}): Connection {
  const base = connections.get(sandbox)
  if (!base) throw new InvalidArgumentError('invalid_argument', 'expected a Sandbox made by Sandbox.create, connect or fork')
  return overlayConnection(base, options)
}

function sandboxPath(id: string, rest = ''): string {
  return `${sandboxesPath}/${encodeURIComponent(id)}${rest}`
}

/** One sandbox. Every method takes the connection options; the ones given at create/connect are the default. */
export class Sandbox {
  /** Commands of this sandbox. */
  readonly commands: Commands
  /** Files of this sandbox. */
  readonly files: Files
  /** Terminals of this sandbox (E2B's `sandbox.pty`). */
  readonly pty: Pty
  /** The domain its ports are reached under (`<port>-<id>.<domain>`), as the server answered. */
  readonly domain: string | undefined
  /** The token its ports ask for when it was created with `allowPublicTraffic: false` (header `e2b-traffic-access-token`). */
  readonly trafficAccessToken: string | undefined

  private constructor(
    /** Id of the sandbox, e.g. `sb-k3j9x0q2m1c8v7d4`. */
    readonly sandboxId: string,
    private readonly connection: Connection,
    /** How it started, when this object comes from `Sandbox.create`. */
    readonly start: SandboxStart = {},
    ingress: Partial<SandboxIngress> = {},
  ) {
    connections.set(this, connection)
    this.domain = ingress.domain
    this.trafficAccessToken = ingress.trafficAccessToken
    const ctx: SandboxContext = {
      sandboxId,
      clientFor: (options) => this.client(options),
      path: (rest) => sandboxPath(sandboxId, rest),
    }
    this.commands = new Commands(ctx)
    this.files = new Files(ctx)
    this.pty = new Pty(ctx)
  }

  /** Creates a sandbox from a template (default 'debian') and resolves once it runs. */
  static async create(template?: string, options?: SandboxCreateOptions): Promise<Sandbox>
  static async create(options?: SandboxCreateOptions): Promise<Sandbox>
  static async create(templateOrOptions?: string | SandboxCreateOptions, maybeOptions: SandboxCreateOptions = {}): Promise<Sandbox> {
    const template = typeof templateOrOptions === 'string' ? templateOrOptions : 'debian'
    const options = typeof templateOrOptions === 'object' ? templateOrOptions : maybeOptions
    const connection = resolveConnection(options)
    const body: CreateSandboxRequest = { template }
    if (options.memoryMiB !== undefined) body.memoryMiB = options.memoryMiB
    if (options.cpus !== undefined) body.cpus = options.cpus
    if (options.pidsMax !== undefined) body.pidsMax = options.pidsMax
    if (options.diskMiB !== undefined) body.diskMiB = options.diskMiB
    if (options.timeoutMs !== undefined) body.timeoutMs = options.timeoutMs
    if (options.labels) body.labels = options.labels
    if (options.env) body.env = options.env
    if (options.network) body.network = options.network
    if (options.runtime) body.runtime = options.runtime
    const info = await createApiClient(connection).json<SandboxInfo & SandboxStart & Partial<SandboxIngress>>({ method: 'POST', path: sandboxesPath, json: body, signal: options.signal })
    const start: SandboxStart = {}
    if (info.source) start.source = info.source
    if (info.sourceReason) start.sourceReason = info.sourceReason
    if (info.golden) start.golden = info.golden
    return new Sandbox(info.id, connection, start, info)
  }

  /**
   * A Sandbox for an id, without asking the server: no request is made, so a call on it is what
   * finds out (NotFoundError when there is no such sandbox). `domain` and `trafficAccessToken` are
   * unknown; use `connect` for those.
   */
  static fromId(sandboxId: string, options: ConnectionOptions = {}): Sandbox {
    return new Sandbox(sandboxId, resolveConnection(options))
  }

  /** Connects to an existing sandbox; throws NotFoundError if there is none with this id. */
  static async connect(sandboxId: string, options: ConnectionOptions = {}): Promise<Sandbox> {
    const connection = resolveConnection(options)
    const info = await createApiClient(connection).json<SandboxInfo & Partial<SandboxIngress>>({ method: 'GET', path: sandboxPath(sandboxId), signal: options.signal })
    return new Sandbox(sandboxId, connection, {}, info)
  }

  /** Sandboxes the key can see, filtered by labels, state, template and start time, in one answer. */
  static list(options: SandboxListOptions = {}): Promise<SandboxInfo[]> {
    return createApiClient(resolveConnection(options)).json<SandboxInfo[]>({ method: 'GET', path: sandboxesPath, query: listQueryOf(options), signal: options.signal })
  }

  /** One page of `list`: pass its `nextToken` to the next call until there is none. */
  static async listPage(options: SandboxListPageOptions = {}): Promise<SandboxListPage> {
    const query = { ...listQueryOf(options), limit: String(options.limit ?? maxListLimit), nextToken: options.nextToken }
    const { value, headers } = await createApiClient(resolveConnection(options)).jsonAndHeaders<SandboxInfo[]>({ method: 'GET', path: sandboxesPath, query, signal: options.signal })
    const nextToken = headers.get('x-next-token')
    return nextToken ? { sandboxes: value, nextToken } : { sandboxes: value }
  }

  /** A sandbox's usage sampled every few seconds over its life (by default all of it), oldest first. */
  static getMetrics(sandboxId: string, options: SandboxMetricsOptions = {}): Promise<SandboxMetrics[]> {
    return metricsOf(createApiClient(resolveConnection(options)), sandboxId, options)
  }

  /** Information about a sandbox by id. */
  static getInfo(sandboxId: string, options: ConnectionOptions = {}): Promise<SandboxInfo> {
    return createApiClient(resolveConnection(options)).json<SandboxInfo>({ method: 'GET', path: sandboxPath(sandboxId), signal: options.signal })
  }

  /** Sets a sandbox's timeout to `timeoutMs` from now. */
  static setTimeout(sandboxId: string, timeoutMs: number, options: ConnectionOptions = {}): Promise<SandboxInfo> {
    return setTimeoutOf(createApiClient(resolveConnection(options)), sandboxId, timeoutMs, options.signal)
  }

  /** Destroys a sandbox by id; resolves false if there was none. */
  static kill(sandboxId: string, options: SandboxKillOptions = {}): Promise<boolean> {
    return killOf(createApiClient(resolveConnection(options)), sandboxId, options)
  }

  /**
   * Starts sandboxes whose filesystem is exactly the snapshot's (sharing its layers copy-on-write),
   * with its config and env. All or none: a fork that cannot start them all leaves none.
   */
  static async fork(snapshotId: string, options: SandboxForkOptions = {}): Promise<Sandbox[]> {
    const connection = resolveConnection(options)
    const body: ForkRequest = { count: options.count ?? 1 }
    if (options.timeoutMs !== undefined) body.timeoutMs = options.timeoutMs
    if (options.labels) body.labels = options.labels
    if (options.network) body.network = options.network
    const infos = await createApiClient(connection).json<SandboxInfo[]>({
      method: 'POST',
      path: `/v1/snapshots/${encodeURIComponent(snapshotId)}/fork`,
      json: body,
      signal: options.signal,
    })
    return infos.map((info) => new Sandbox(info.id, connection))
  }

  /** Freezes this sandbox for a moment and saves its filesystem as a snapshot; it goes on running. */
  snapshot(options: ConnectionOptions & { label?: string } = {}): Promise<SnapshotInfo> {
    const json = options.label === undefined ? {} : { label: options.label }
    return this.client(options).json<SnapshotInfo>({ method: 'POST', path: sandboxPath(this.sandboxId, '/snapshots'), json, signal: options.signal })
  }

  /** Replaces this sandbox by a fresh one at the snapshot (same id; running commands end). */
  async restore(snapshotId: string, options: ConnectionOptions = {}): Promise<void> {
    await this.client(options).json<SandboxInfo>({ method: 'POST', path: sandboxPath(this.sandboxId, '/restore'), json: { snapshotId }, signal: options.signal })
  }

  /**
   * Replaces this sandbox's egress policy at once, whole: lists left out are cleared (as E2B's
   * updateNetwork). Open connections stay; new ones follow the new policy.
   */
  async updateNetwork(policy: NetworkUpdateRequest, options: ConnectionOptions = {}): Promise<SandboxInfo> {
    return this.client(options).json<SandboxInfo>({ method: 'PATCH', path: sandboxPath(this.sandboxId, '/network'), json: policy, signal: options.signal })
  }

  /** The host a port of this sandbox is reached at through the server: `<port>-<id>.<domain>`. */
  getHost(port: number): string {
    if (!this.domain) throw new InvalidArgumentError('invalid_argument', 'the server gave no domain for this sandbox: get it from Sandbox.create or Sandbox.connect')
    return `${port}-${this.sandboxId}.${this.domain}`
  }

  /** The URL of a port of this sandbox: `http://<port>-<id>.<domain>`. */
  getUrl(port: number): string {
    return `http://${this.getHost(port)}`
  }

  /** Information about this sandbox: state, limits, labels, expiry. */
  getInfo(options: ConnectionOptions = {}): Promise<SandboxInfo> {
    return this.client(options).json<SandboxInfo>({ method: 'GET', path: sandboxPath(this.sandboxId), signal: options.signal })
  }

  /** Its usage sampled every few seconds over its life (by default all of it), oldest first: CPU, memory, processes, disk. */
  getMetrics(options: SandboxMetricsOptions = {}): Promise<SandboxMetrics[]> {
    return metricsOf(this.client(options), this.sandboxId, options)
  }

  /** Its usage now, measured when asked: CPU since the previous call, memory, processes, and disk against its quota. */
  getUsage(options: ConnectionOptions = {}): Promise<SandboxMetrics> {
    return this.client(options).json<SandboxMetrics>({ method: 'GET', path: sandboxPath(this.sandboxId, '/usage'), signal: options.signal })
  }

  /** Sets this sandbox's timeout to `timeoutMs` from now (extending or shortening it). */
  async setTimeout(timeoutMs: number, options: ConnectionOptions = {}): Promise<void> {
    await setTimeoutOf(this.client(options), this.sandboxId, timeoutMs, options.signal)
  }

  /** Whether this sandbox exists and is running. */
  async isRunning(options: ConnectionOptions = {}): Promise<boolean> {
    try {
      return (await this.getInfo(options)).state === 'running'
    } catch (err) {
      if (err instanceof NotFoundError) return false
      throw err
    }
  }

  /** Destroys this sandbox; resolves false if it was already gone. */
  kill(options: SandboxKillOptions = {}): Promise<boolean> {
    return killOf(this.client(options), this.sandboxId, options)
  }

  private client(options?: ConnectionOptions): ApiClient {
    return createApiClient(overlayConnection(this.connection, options))
  }
}

function listQueryOf(options: SandboxListOptions): Record<string, string | string[] | undefined> {
  return {
    label: Object.entries(options.labels ?? {}).map(([k, v]) => `${k}=${v}`),
    state: options.state === undefined ? undefined : [options.state].flat(),
    template: options.template,
    startedAfter: options.startedAfter?.toISOString(),
    startedBefore: options.startedBefore?.toISOString(),
    order: options.order,
  }
}

function metricsOf(client: ApiClient, id: string, options: SandboxMetricsOptions): Promise<SandboxMetrics[]> {
  const query = { start: options.start?.toISOString(), end: options.end?.toISOString() }
  return client.json<SandboxMetrics[]>({ method: 'GET', path: sandboxPath(id, '/metrics'), query, signal: options.signal })
}

function setTimeoutOf(client: ApiClient, id: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<SandboxInfo> {
  return client.json<SandboxInfo>({ method: 'POST', path: sandboxPath(id, '/timeout'), json: { timeoutMs }, signal })
}

async function killOf(client: ApiClient, id: string, options: SandboxKillOptions): Promise<boolean> {
  const { signal } = options
  try {
    await client.send({ method: 'DELETE', path: sandboxPath(id), query: options.wait === false ? { wait: 'false' } : undefined, signal })
    return true
  } catch (err) {
    if (err instanceof NotFoundError) return false
    throw err
  }
}
