/** The runtimes one agent offers: runc always, qemu where its binary is installed. */
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { createQemuBackend, createRuncBackend, type QemuAccel, type RuntimeBackend } from '../runtime/index.js'
import { SandstormError, type Logger } from '../shared/index.js'

/** Runtime names a create may ask for, whether or not this host offers them. */
export const knownRuntimes = ['runc', 'qemu'] as const

/** The QEMU binary the qemu runtime drives. */
export const qemuBinary = 'qemu-system-x86_64'

/** Options of createAgentRuntimes. */
export interface AgentRuntimesOptions {
  /** runc state in `<dataDir>/runc` and `<dataDir>/sandboxes`; VMs in `<dataDir>/qemu`. */
  dataDir: string
  logger: Logger
  /** Accelerator of the qemu runtime. @default 'auto' (probed) */
  accel?: QemuAccel
  /** Offer qemu when its binary is found. @default true */
  qemu?: boolean
}

/** The absolute path of an executable on PATH (and the sbin dirs root has), or null. */
export function findExecutable(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const dir of dirs.filter(Boolean)) {
    const path = join(dir, name)
    try {
      accessSync(path, constants.X_OK)
      return path
    } catch {
      // Not in this dir.
    }
  }
  return null
}

/** One backend per runtime this host can run, by name. */
export function createAgentRuntimes(options: AgentRuntimesOptions): Map<string, RuntimeBackend> {
  const { dataDir, logger } = options
  const out = new Map<string, RuntimeBackend>()
  out.set('runc', createRuncBackend({ stateRoot: join(dataDir, 'runc'), sandboxesDir: join(dataDir, 'sandboxes'), logger }))
  const qemu = options.qemu !== false ? findExecutable(qemuBinary) : null
  if (qemu) out.set('qemu', createQemuBackend({ dir: join(dataDir, 'qemu'), accel: options.accel, binary: qemu, logger }))
  else logger.info({ binary: qemuBinary }, 'qemu runtime not offered: its binary is not installed')
  return out
}

/** The backend of runtime `name`, or a `failed_precondition` naming what this host offers. */
export function requireRuntime(backends: Map<string, RuntimeBackend>, name: string, host: string): RuntimeBackend {
  const backend = backends.get(name)
  if (backend) return backend
  const hint = name === 'qemu' ? ' (install it there: apt-get install qemu-system-x86 qemu-utils)' : ''
  throw new SandstormError('failed_precondition', `runtime "${name}" is not available on agent ${host}${hint}: expected one of ${[...backends.keys()].join(', ')}`)
}

/**
 * Lets go of what backends hold open to their sandboxes (qemu's QMP and guest agent sockets, which
 * accept one client at a time), leaving the sandboxes running for the next agent to adopt; waits
 * for a backend whose close is asynchronous (qemu stops its pre-started QEMUs).
 */
export async function closeRuntimes(backends: Iterable<RuntimeBackend>): Promise<void> {
  await Promise.all([...backends].map((b) => b.close?.()))
}
