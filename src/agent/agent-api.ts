/**
 * What the server asks of an agent. `sandstorm up` calls a local agent in the same process; a
 * remote agent (over gRPC) implements the same interface.
 */
import type { Duplex } from 'node:stream'
import type { AgentNetwork, CallOptions, EgressPolicy, EntryInfo, ExecEvent, ProcessInfo, ProcessResult, TemplateInfo } from '../shared/index.js'
import type { AgentGoldenApi } from './golden-api.js'
import type { AgentImageApi } from './image-api.js'
import type { AgentSnapshotApi } from './snapshot-api.js'

/** A sandbox to create, with everything already validated and defaulted by the server. */
export interface AgentCreateRequest {
  id: string
  template: string
  memoryMiB: number
  cpus: number
  pidsMax: number
  /** The most it may write to its root filesystem, in MiB. */
  diskMiB: number
  env: Record<string, string>
  /** Only lo, or a veth with this egress policy. */
  network: AgentNetwork
  /** Start from this snapshot's filesystem (a fork or a restore) instead of the template's. */
  snapshotId?: string
  /** Runtime to run it on (one of `info().runtimes`). @default the snapshot's or golden template's, else the agent's default */
  runtime?: string
  /**
   * Made ahead of demand (a warm pool's fill): its template's start command runs at the lowest CPU
   * weight, so that it yields the CPU to sandboxes in use, and gets the normal weight once ready.
   * @default false
   */
  background?: boolean
  /** Its disk is made on the spot, not taken from the spares, which then keep their size (a build step's disk). @default true */
  spareDisk?: boolean
}

/** A sandbox as the agent holds it. */
export interface AgentSandbox {
  id: string
  template: string
  runtime: string
  status: 'running' | 'paused' | 'stopped'
  /** Only on a create from a golden template: started from its saved state ('golden') or booted ('cold'). */
  start?: 'golden' | 'cold'
  /** Only with `start: 'cold'` when the golden state could not be used: why. */
  startReason?: string
}

/** A sandbox's usage now, as its agent measures it. */
export interface AgentSandboxStats {
  memoryBytes: number
  /** CPU time used since it started. */
  cpuNanos: number
  pids: number
  /** What it wrote to its root filesystem, and its quota (0: none). */
  diskUsedBytes: number
  diskLimitBytes: number
}

/** A command to start, validated by the server. */
export interface AgentExecRequest {
  argv: string[]
  env: Record<string, string>
  /** @default the template's (an image's WORKDIR), else the user's home */
  cwd?: string
  /** @default the template's (an image's USER), else `fallbackUser` (root where an image template has no such user) */
  user?: string
  /**
   * The user when neither the request nor its template names one (E2B's `user` for templates
   * that are not images); with it the command gets `USER` set to the user it runs as. @default 'root'
   */
  fallbackUser?: string
  stdin?: Uint8Array
  keepStdin?: boolean
  timeoutMs?: number
  /**
   * Runs the command on a new terminal made inside the sandbox (by its init on runc): the
   * terminal is its controlling tty and its stdin, stdout and stderr; what it prints arrives as
   * `stdout`, and stdin is what is typed (`keepStdin` is implied).
   */
  pty?: TerminalSize
}

/** A terminal's size in character cells. */
export interface TerminalSize {
  cols: number
  rows: number
}

/** Capacity and identity an agent reports. */
export interface AgentInfo {
  id: string
  hostname: string
  runtimes: string[]
  cpus: number
  memoryMiB: number
}

/** The agent's side of every sandbox operation. Errors are SandstormErrors with a code. */
export interface AgentApi {
  info(): AgentInfo
  templates(options?: CallOptions): Promise<TemplateInfo[]>
  create(req: AgentCreateRequest, options?: CallOptions): Promise<AgentSandbox>
  destroy(id: string, options?: CallOptions): Promise<void>
  /** Sandboxes that run on this host now (used to adopt them after a restart). */
  list(options?: CallOptions): Promise<AgentSandbox[]>
  pause(id: string, options?: CallOptions): Promise<void>
  resume(id: string, options?: CallOptions): Promise<void>
  /** Its usage now: memory, CPU time, processes, disk against its quota. */
  stats(id: string, options?: CallOptions): Promise<AgentSandboxStats>
  /**
   * The usage of many sandboxes in one call (the server samples every sandbox every few seconds).
   * A sandbox that cannot be measured now (gone, or its machine saved to disk) is left out.
   */
  statsMany(ids: string[], options?: CallOptions): Promise<Record<string, AgentSandboxStats>>

  /** Starts a command; resolves once it has started, with its pid. The signal cancels the start only; the started process is not tied to it. */
  exec(id: string, req: AgentExecRequest, options?: CallOptions): Promise<{ pid: number }>
  /**
   * Follows a process: replays the output it has kept so far, then streams the rest, and ends
   * with an `end` event. Cancelling the signal stops following; it does not kill the process.
   */
  follow(id: string, pid: number, options?: CallOptions): AsyncIterable<ExecEvent>
  /** Waits for a process to end. */
  wait(id: string, pid: number, options?: CallOptions): Promise<ProcessResult>
  processes(id: string, options?: CallOptions): Promise<ProcessInfo[]>
  signal(id: string, pid: number, signal: NodeJS.Signals, options?: CallOptions): Promise<void>
  writeStdin(id: string, pid: number, data: Uint8Array | null, close: boolean, options?: CallOptions): Promise<void>
  /** Resizes the terminal of a process started with `pty` (its foreground programs get SIGWINCH); `failed_precondition` when it has none. */
  resizePty(id: string, pid: number, size: TerminalSize, options?: CallOptions): Promise<void>

  /** Replaces a sandbox's egress policy at once; `failed_precondition` for a sandbox created with network "none". */
  updateNetwork(id: string, egress: EgressPolicy, options?: CallOptions): Promise<void>
  /**
   * A TCP connection to `port` of the sandbox (ingress): bytes both ways until either side ends.
   * `unavailable` when nothing listens there. The signal cancels the connect only.
   */
  connect(id: string, port: number, options?: CallOptions): Promise<Duplex>

  readFile(id: string, path: string, options?: CallOptions): AsyncIterable<Uint8Array>
  writeFile(id: string, path: string, data: AsyncIterable<Uint8Array>, options?: CallOptions): Promise<void>
  listDir(id: string, path: string, options?: CallOptions): Promise<EntryInfo[]>
  stat(id: string, path: string, options?: CallOptions): Promise<EntryInfo>
  mkdir(id: string, path: string, parents: boolean, options?: CallOptions): Promise<void>
  remove(id: string, path: string, recursive: boolean, options?: CallOptions): Promise<void>
  rename(id: string, from: string, to: string, options?: CallOptions): Promise<void>
  /** Stops the agent; its sandboxes keep running (they are adopted by the next start). */
  close(): Promise<void>
  /** Snapshots, where the agent's storage can take them. */
  readonly snapshots?: AgentSnapshotApi
  /** Golden templates (snapshots promoted to template versions), where the agent has snapshots. */
  readonly golden?: AgentGoldenApi
  /** Image templates (from registries, archives and Dockerfiles), where the agent builds them (the local agent). */
  readonly images?: AgentImageApi
}
