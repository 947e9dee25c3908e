/** QMP steps the backend takes more than once: migration with RAM left out, and waiting for it. */
import { setTimeout as sleep } from 'node:timers/promises'
import { SandstormError } from '../../shared/index.js'
import type { JsonChannel } from './json-channel.js'
import { withFileOnMonitor } from './vm-jail.js'

/** How long a save or a load of a machine's device state may take. */
export const migrateTimeoutMs = 60_000

/** Turns on `x-ignore-shared`: RAM mapped from a shared file stays out of the migration stream. Both ends need it. */
export async function ignoreSharedRam(qmp: JsonChannel): Promise<void> {
  await qmp.call('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] })
}

/** Shell-quotes a path for QMP's `exec:` URIs (run by /bin/sh). */
function quote(path: string): string {
  return `'${path.replace(/'/g, `'\\''`)}'`
}

/**
 * Where QEMU gets a state file from: the agent opens it and hands it to QEMU's second monitor
 * (`filesMonitor`, see vm-jail.ts). A QEMU started by a version before jails (adopted, no such
 * monitor: null) runs as root and opens the file itself, through `cat`.
 */
type FilesMonitor = string | null

/** The fd name a state file is handed over by. */
const stateFd = 'sandstorm-state'

/** Writes the device state of a stopped VM to `file` and waits until it is complete. */
export async function migrateToFile(qmp: JsonChannel, filesMonitor: FilesMonitor, file: string, timeoutMs: number): Promise<void> {
  if (filesMonitor) await withFileOnMonitor(filesMonitor, file, 'write', stateFd, { execute: 'migrate', arguments: { uri: `fd:${stateFd}` } })
  else await qmp.call('migrate', { uri: `exec:cat > ${quote(file)}` })
  await waitMigration(qmp, timeoutMs, 'saving the machine state')
}

/** Loads device state into a VM started with `-incoming defer` and waits until it is loaded. */
export async function migrateFromFile(qmp: JsonChannel, filesMonitor: FilesMonitor, file: string, timeoutMs: number): Promise<void> {
  if (filesMonitor) await withFileOnMonitor(filesMonitor, file, 'read', stateFd, { execute: 'migrate-incoming', arguments: { uri: `fd:${stateFd}` } })
  else await qmp.call('migrate-incoming', { uri: `exec:cat ${quote(file)}` })
  const deadline = Date.now() + timeoutMs
  for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
    const s = await qmp.call<{ status: string }>('query-status')
    if (s.status !== 'inmigrate') {
      const m = await qmp.call<{ status?: string; 'error-desc'?: string }>('query-migrate')
      if (m.status === 'failed') throw new SandstormError('internal', `loading the machine state failed: ${m['error-desc'] ?? 'no reason given'}`)
      return
    }
    if (Date.now() > deadline) throw new SandstormError('deadline_exceeded', `loading the machine state took more than ${timeoutMs} ms`)
    await sleep(wait)
  }
}

async function waitMigration(qmp: JsonChannel, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
    const m = await qmp.call<{ status?: string; 'error-desc'?: string }>('query-migrate')
    if (m.status === 'completed') return
    if (m.status === 'failed' || m.status === 'cancelled') throw new SandstormError('internal', `${what} failed: ${m['error-desc'] ?? m.status}`)
    if (Date.now() > deadline) throw new SandstormError('deadline_exceeded', `${what} took more than ${timeoutMs} ms`)
    await sleep(wait)
  }
}
