/**
 * A saved machine's directory: what `saveMachine` writes and a clone starts from. Everything in it
 * is read-only once written: clones map `memory.ram` privately (copy-on-write) and stack their own
 * qcow2 overlay on `disk.qcow2`.
 *
 *   memory.ram    guest RAM at the moment of the save (a sparse copy)
 *   state.bin     QEMU's device state (the migration stream without RAM)
 *   disk.qcow2    the disk at that moment; its backing file is the template's guest root image
 *   config.json   what a clone must match (memory, cpus, accelerator) and the boot files
 *   overlay.qcow2 an empty overlay on disk.qcow2, which a clone copies (faster than qemu-img)
 */
import { open, readFile, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { z } from 'zod'
import { SandstormError } from '../../shared/index.js'

/** Files of a saved machine. */
export function machineFiles(dir: string) {
  return {
    memory: join(dir, 'memory.ram'),
    state: join(dir, 'state.bin'),
    disk: join(dir, 'disk.qcow2'),
    config: join(dir, 'config.json'),
    overlay: join(dir, 'overlay.qcow2'),
  }
}

const machineConfigSchema = z.object({
  format: z.literal(1),
  memoryMiB: z.number(),
  cpus: z.number(),
  accel: z.enum(['kvm', 'tcg']),
  kernel: z.string(),
  initramfs: z.string(),
  /** The saved VM's hostname (its kernel command line, which a clone repeats). */
  hostname: z.string(),
  /**
   * True when the saved VM was itself a clone: its RAM was a private mapping, so the pages went
   * into state.bin and memory.ram is an empty file of the right size for them to land in.
   */
  ramInState: z.boolean(),
  savedAt: z.string(),
  /** The guest holds the identity helper (guest-scripts.ts): a clone gets its identity from one exec of it. */
  identityHelper: z.boolean().optional(),
  /** The saved VM had a network device: its clones have one too (machines of versions before networking have none). */
  nic: z.boolean().optional(),
  /** The size of the saved VM's root disk: its clones' disk (absent: a machine saved before quotas). */
  diskMiB: z.number().optional(),
})

/** A saved machine's config.json. */
export type MachineConfig = z.infer<typeof machineConfigSchema>

/** Writes config.json. */
export async function writeMachineConfig(dir: string, config: MachineConfig): Promise<void> {
  await writeFile(machineFiles(dir).config, JSON.stringify(config, null, 2) + '\n', { mode: 0o444 })
}

/** Reads config.json of a saved machine; failed_precondition when it is missing or malformed. */
export async function readMachineConfig(dir: string): Promise<MachineConfig> {
  let text: string
  try {
    text = await readFile(machineFiles(dir).config, 'utf8')
  } catch {
    throw new SandstormError('failed_precondition', `saved machine ${basename(dir)} is gone (its config.json is missing)`)
  }
  const parsed = machineConfigSchema.safeParse(JSON.parse(text))
  if (!parsed.success) throw new SandstormError('failed_precondition', `saved machine ${basename(dir)} has a malformed config.json`, { cause: parsed.error })
  return parsed.data
}

/**
 * The backing file named in a qcow2 image's header, or null (no file, not qcow2, no backing). A
 * copied overlay is only right while that name still points at this machine's disk: a machine
 * dir that was moved makes clones fall back to qemu-img.
 */
export async function qcow2BackingFile(path: string): Promise<string | null> {
  const file = await open(path, 'r').catch(() => null)
  if (!file) return null
  try {
    const head = Buffer.alloc(65536)
    const { bytesRead } = await file.read(head, 0, head.length, 0)
    if (bytesRead < 20 || head.readUInt32BE(0) !== 0x514649fb) return null
    const offset = Number(head.readBigUInt64BE(8))
    const size = head.readUInt32BE(16)
    if (offset === 0 || offset + size > bytesRead) return null
    return head.subarray(offset, offset + size).toString('utf8')
  } finally {
    await file.close()
  }
}
