/**
 * The interface every isolation backend implements (runc containers, QEMU microVMs). All
 * backends run the same contract suite (contract.ts); a backend that cannot do a case lists it
 * by name with its reason.
 */
import type { CallOptions, EntryInfo, ProcessResult } from '../shared/index.js'

/** The root filesystem a sandbox starts from, as the template store resolves it. */
export interface RootfsSpec {
  /** Read-only layers, topmost first (overlay `lowerdir` order). */
  lowerDirs: string[]
  /** Host directories bind-mounted read-only into the sandbox (e.g. the host's /usr). */
  readonlyBinds: { source: string; target: string }[]
  /** The sandbox's writable layer, made by the layer store (a btrfs subvolume there). @default `<sandbox dir>/upper` */
  upperDir?: string
  /** Overlayfs scratch dir beside upperDir (same filesystem and subvolume). @default `<sandbox dir>/work` */
  workDir?: string
  /**
   * Setuid files in it raise privileges (sudo), up to what a root command already has: the same
   * capabilities and seccomp filter. @default false (no_new_privs, and the root mounted nosuid)
   */
  allowSetuid?: boolean
}

/**
 * The network a sandbox joins: `none` is a namespace of its own with only lo; `netns` is a
 * namespace the agent made, with a veth, an address and a route through the gateway.
 */
export type SandboxNetworkSpec =
  | { mode: 'none' }
  | {
      mode: 'netns'
      /** The namespace to join (a file under /run/netns). */
      netnsPath: string
      /** A host file that becomes the sandbox's /etc/resolv.conf (the gateway's resolver). */
      resolvConf: string
      address: string
      gateway: string
    }

/** What a sandbox is made with. */
export interface SandboxSpec {
  id: string
  rootfs: RootfsSpec
  memoryMiB: number
  cpus: number
  pidsMax: number
  /** Environment every command gets, before its own. */
  env: Record<string, string>
  hostname: string
  network: SandboxNetworkSpec
  /**
   * A machine runtime's disk quota: the size of the VM's root disk. A container runtime leaves it
   * to the agent, which gives the writable layer its own quota (storage/layers).
   */
  diskMiB?: number
  /**
   * Start from this saved machine (memory, device state, disk) instead of booting: a golden clone.
   * Only backends with `saveMachine`; its memoryMiB and cpus must equal the spec's.
   */
  machine?: MachineImage
}

/** A running machine saved whole (the qemu runtime): memory, device state and disk, in one directory. */
export interface MachineImage {
  /** The directory `saveMachine` wrote; the caller owns it from then on. */
  dir: string
  memoryMiB: number
  cpus: number
}

/** A sandbox as the backend sees it on the host. */
export interface RuntimeSandbox {
  id: string
  status: 'running' | 'paused' | 'stopped'
  /** Host pid of the sandbox's init, when it runs. */
  pid: number | null
}

/** One command to start inside a sandbox. */
export interface ExecSpec {
  argv: string[]
  env: Record<string, string>
  cwd: string
  /** Numeric uid and gid; the agent resolves names. */
  uid: number
  gid: number
  /** Kills the whole process tree after this long. */
  timeoutMs?: number
  /**
   * Runs the command on a new terminal of this size, made inside the sandbox: its controlling tty
   * and its stdin, stdout and stderr (all output arrives as stdout). A runtime without terminals
   * rejects it with `failed_precondition`.
   */
  pty?: TerminalSize
}

/** A terminal's size in character cells, each 1..65535. */
export interface TerminalSize {
  cols: number
  rows: number
}

/** A running command. Output arrives through the callbacks; `result` settles when it ends. */
export interface RuntimeProcess {
  /** Pid inside the sandbox. */
  readonly pid: number
  readonly result: Promise<ProcessResult>
  writeStdin(data: Uint8Array): Promise<void>
  closeStdin(): void
  /** Sends a signal to the command's whole process tree. Safe to call after it ended. */
  kill(signal?: NodeJS.Signals): Promise<void>
  /**
   * Sets the size of the command's terminal (its foreground process group gets SIGWINCH). Only on
   * a process started with `pty`; `failed_precondition` once it ended.
   */
  resize?(size: TerminalSize): Promise<void>
}

/** Where a process's output goes. */
export interface OutputSink {
  onStdout(chunk: Uint8Array): void
  onStderr(chunk: Uint8Array): void
}

/** Host-side usage of one sandbox. */
export interface SandboxStats {
  memoryBytes: number
  cpuNanos: number
  pids: number
  /** A runtime whose sandboxes hold their own disk (a VM's image): what is used of it. */
  disk?: { usedBytes: number; limitBytes: number }
}

/** An isolation backend. Every method takes `{ signal, timeoutMs }`. */
export interface RuntimeBackend {
  readonly name: string
  /** Starts a sandbox; on failure leaves nothing behind. */
  create(spec: SandboxSpec, options?: CallOptions): Promise<RuntimeSandbox>
  /** Stops and removes a sandbox and everything it held on the host. Safe to call twice. */
  destroy(id: string, options?: CallOptions): Promise<void>
  /** Sandboxes this backend finds on the host (for adoption after a restart). */
  list(options?: CallOptions): Promise<RuntimeSandbox[]>
  pause(id: string, options?: CallOptions): Promise<void>
  resume(id: string, options?: CallOptions): Promise<void>
  /**
   * Stops every process of a sandbox for a moment (a snapshot), faster than pause; resolves false
   * when it was paused already, and then `thaw` must not be called. Optional: callers fall back to pause.
   */
  freeze?(id: string): Promise<boolean>
  thaw?(id: string): Promise<void>
  /**
   * Restores a running sandbox in place: every process but its init is killed (a command that
   * was running ends with `restored`), and its root becomes `rootfs` (a fresh writable layer over
   * read-only ones; its read-only binds and setuid permission must be the sandbox's own), with
   * `env` as its environment; `snapshotId` is named in the results of the commands it ends
   * (`restoredTo`). Namespaces, cgroups, network and init stay. Throws
   * `failed_precondition` when nothing was changed (the switch was refused), any other error
   * when it failed part way: the sandbox must then be replaced. Optional.
   */
  renew?(id: string, rootfs: RootfsSpec, env: Record<string, string>, snapshotId: string): Promise<void>
  /**
   * Saves a running sandbox whole into `dir` (which must not exist yet): guest memory, device state
   * and disk. The sandbox goes on running. Optional: only backends whose sandboxes are machines.
   */
  saveMachine?(id: string, dir: string, options?: CallOptions): Promise<MachineImage>
  /**
   * Lets go of what the backend holds open to its sandboxes (qemu's QMP and guest agent sockets
   * take one client at a time), leaving them running for the next agent to adopt. Optional.
   */
  close?(): void
  stats(id: string, options?: CallOptions): Promise<SandboxStats>
  /** Sets a sandbox's share of contended CPU (its limit stays): `low` for work ahead of demand. */
  setCpuWeight?(id: string, weight: 'low' | 'normal'): void
  exec(id: string, spec: ExecSpec, sink: OutputSink, options?: CallOptions): Promise<RuntimeProcess>

  readFile(id: string, path: string, options?: CallOptions): AsyncIterable<Uint8Array>
  writeFile(id: string, path: string, data: AsyncIterable<Uint8Array>, options?: CallOptions): Promise<void>
  listDir(id: string, path: string, options?: CallOptions): Promise<EntryInfo[]>
  stat(id: string, path: string, options?: CallOptions): Promise<EntryInfo>
  mkdir(id: string, path: string, parents: boolean, options?: CallOptions): Promise<void>
  remove(id: string, path: string, recursive: boolean, options?: CallOptions): Promise<void>
  rename(id: string, from: string, to: string, options?: CallOptions): Promise<void>
  /** Resolves a user name to uid and gid by reading the sandbox's own /etc/passwd from inside. */
  resolveUser(id: string, user: string, options?: CallOptions): Promise<{ uid: number; gid: number; home: string }>
}
