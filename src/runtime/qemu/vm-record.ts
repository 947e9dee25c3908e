/**
 * What a backend writes beside each VM so that another backend (the agent after a restart) can
 * take it over: where its memory is, whether it owns that file, and the environment of its commands.
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { z } from 'zod'
import { SandstormError } from '../../shared/index.js'

const vmRecordSchema = z.object({
  id: z.string(),
  memoryMiB: z.number(),
  cpus: z.number(),
  accel: z.enum(['kvm', 'tcg']),
  kernel: z.string(),
  initramfs: z.string(),
  hostname: z.string(),
  /** Guest RAM. */
  memPath: z.string(),
  /** Shared: the VM owns the file (destroy removes it) and a save copies it; private: a clone's view of a saved machine's file. */
  memShared: z.boolean(),
  /** The saved machine a clone started from, if any. */
  machineDir: z.string().nullable(),
  /**
   * The disk, when it is not the VM's directory's disk.qcow2: a VM started as a spare keeps the
   * path QEMU opened its disk by (QEMU opens it again once the state is loaded, and after a save).
   */
  diskPath: z.string().optional(),
  /** The guest holds the identity helper (written by a save while it ran, or inherited from its machine). */
  identityHelper: z.boolean().optional(),
  /** The size of its root disk, its quota (absent on VMs of versions before quotas). */
  diskMiB: z.number().optional(),
  /** Environment every command gets (`K=V`). */
  env: z.array(z.string()),
  /** Its network device (none on VMs of versions before networking): the tap it is on (null: none) and its MAC. */
  nic: z.object({ tap: z.string().nullable(), mac: z.string() }).optional(),
  /** The uid and gid its QEMU runs as, jailed (see vm-jail.ts); absent on VMs of versions before jails, whose QEMU runs as root. */
  uid: z.number().int().optional(),
})

/** One VM's record (vm.json). */
export type VmRecord = z.infer<typeof vmRecordSchema>

/** Writes a VM's record whole or not at all: a teardown reads what to remove and give back from it. */
export async function writeVmRecord(path: string, record: VmRecord): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(record, null, 2) + '\n', { mode: 0o600 })
  await rename(`${path}.tmp`, path)
}

/** Reads a VM's record; not_found when there is none. */
export async function readVmRecord(path: string): Promise<VmRecord> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    throw new SandstormError('not_found', `no VM record at ${path}`)
  }
  const parsed = vmRecordSchema.safeParse(JSON.parse(text))
  if (!parsed.success) throw new SandstormError('internal', `VM record ${path} is malformed: ${parsed.error.message}`)
  return parsed.data
}
