/**
 * A VM sandbox's files, through its guest agent: reads and writes by the agent's file calls,
 * the rest as small busybox scripts (guest-fs.ts).
 */
import { SandstormError, type EntryInfo } from '../../shared/index.js'
import type { RuntimeBackend } from '../backend.js'
import type { GuestAgent } from './guest-agent.js'
import { guestFsError, guestFsScripts, parseGuestListing, parseGuestStat } from './guest-fs.js'
import { guestBusybox } from './guest-scripts.js'

const readChunk = 1 << 20

/** The file calls of a backend whose sandboxes' guest agents `agentOf` finds. */
export type GuestFileOps = Pick<RuntimeBackend, 'readFile' | 'writeFile' | 'listDir' | 'stat' | 'mkdir' | 'remove' | 'rename' | 'resolveUser'>

/** File calls over each sandbox's guest agent. */
export function guestFileOps(agentOf: (id: string) => Promise<GuestAgent>): GuestFileOps {
  async function fsRun(id: string, op: string, path: string, script: string, args: string[]): Promise<string> {
    const r = await (await agentOf(id)).run(guestBusybox, ['sh', '-c', script, 'sandstorm-fs', ...args])
    if (r.exitCode !== 0) throw guestFsError(op, path, r.stderr.toString())
    return r.stdout.toString()
  }

  return {
    async *readFile(id: string, path: string): AsyncIterable<Uint8Array> {
      const agent = await agentOf(id)
      const handle = await agent.open(path, 'r').catch((e: Error) => {
        throw guestFsError('read', path, e.message)
      })
      try {
        for (;;) {
          const r = await agent.read(handle, readChunk).catch((e: Error) => {
            throw guestFsError('read', path, e.message)
          })
          if (r.data.length > 0) yield r.data
          if (r.eof || r.data.length === 0) break
        }
      } finally {
        await agent.closeFile(handle).catch(() => undefined)
      }
    },

    async writeFile(id: string, path: string, data: AsyncIterable<Uint8Array>): Promise<void> {
      await fsRun(id, 'write', path, guestFsScripts.parentOf, [path])
      const agent = await agentOf(id)
      const handle = await agent.open(path, 'w').catch((e: Error) => {
        throw guestFsError('write', path, e.message)
      })
      try {
        for await (const chunk of data) {
          for (let at = 0; at < chunk.length; at += readChunk) await agent.write(handle, chunk.subarray(at, at + readChunk))
        }
      } finally {
        await agent.closeFile(handle).catch(() => undefined)
      }
    },

    async listDir(id: string, path: string): Promise<EntryInfo[]> {
      return parseGuestListing(await fsRun(id, 'list', path, guestFsScripts.list, [path]), path)
    },
    async stat(id: string, path: string): Promise<EntryInfo> {
      return parseGuestStat(await fsRun(id, 'stat', path, guestFsScripts.stat, [path]), path)
    },
    async mkdir(id: string, path: string, parents: boolean): Promise<void> {
      await fsRun(id, 'mkdir', path, parents ? guestFsScripts.mkdirParents : guestFsScripts.mkdir, [path])
    },
    async remove(id: string, path: string, recursive: boolean): Promise<void> {
      await fsRun(id, 'remove', path, recursive ? guestFsScripts.removeRecursive : guestFsScripts.remove, [path])
    },
    async rename(id: string, from: string, to: string): Promise<void> {
      await fsRun(id, 'rename', from, guestFsScripts.rename, [from, to])
    },
    async resolveUser(id: string, user: string) {
      if (user === 'root') return { uid: 0, gid: 0, home: '/root' }
      try {
        const [uid, gid, home] = (await fsRun(id, 'resolve user', user, guestFsScripts.resolveUser, [user])).split('\n')
        return { uid: Number(uid), gid: Number(gid), home: home || '/' }
      } catch {
        throw new SandstormError('invalid_argument', `user "${user}" does not exist in the sandbox (expected a name from its /etc/passwd, or a uid)`)
      }
    },
  }
}
