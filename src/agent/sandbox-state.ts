import { writeFileSync } from 'node:fs'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { idPattern } from '../shared/index.js'

const recordSchema = z.object({
  id: z.string().regex(idPattern),
  template: z.string(),
  runtime: z.string(),
  createdAt: z.string(),
  /** A machine clone: the machine snapshot its memory and disk stand on. */
  machineFrom: z.string().optional(),
  /** A machine sandbox: the root it boots from and its config (a machine snapshot records them; it has no layer meta). */
  rootfs: z.object({ lowerDirs: z.array(z.string()), readonlyBinds: z.array(z.object({ source: z.string(), target: z.string() })) }).optional(),
  config: z.object({ memoryMiB: z.number(), cpus: z.number(), pidsMax: z.number(), diskMiB: z.number().default(0), env: z.record(z.string(), z.string()) }).optional(),
  /** The user and cwd its commands get unless they name theirs (an image template's USER and WORKDIR). */
  execDefaults: z.object({ user: z.string().optional(), cwd: z.string().optional() }).optional(),
  /** Its network slot and egress policy; none for a sandbox with only lo. */
  network: z
    .object({
      slot: z.object({ id: z.string().regex(/^[a-z0-9]{10}$/), netns: z.string(), hostIf: z.string(), address: z.string(), gateway: z.string() }),
      egress: z.object({ allowOut: z.array(z.string()), denyOut: z.array(z.string()) }),
    })
    .optional(),
})

/** What the agent remembers of a sandbox across its own restarts. */
export type SandboxRecord = z.infer<typeof recordSchema>

/** The agent's own state on disk: one small JSON file per sandbox, written before it is used. */
export function createSandboxState(dir: string) {
  const file = (id: string) => join(dir, `${id}.json`)
  return {
    async init(): Promise<void> {
      await mkdir(dir, { recursive: true, mode: 0o700 })
    },
    /** Synchronous: a record is a few hundred bytes, written on a create's path, where an async write waits its turn in libuv's pool. */
    async save(record: SandboxRecord): Promise<void> {
      writeFileSync(file(record.id), JSON.stringify(record), { mode: 0o600 })
    },
    async remove(id: string): Promise<void> {
      await rm(file(id), { force: true })
    },
    /** Every record that parses; a corrupt file is reported by id so that it can be cleaned up. */
    async load(): Promise<{ records: SandboxRecord[]; corrupt: string[] }> {
      const records: SandboxRecord[] = []
      const corrupt: string[] = []
      for (const name of await readdir(dir)) {
        if (!name.endsWith('.json')) continue
        try {
          records.push(recordSchema.parse(JSON.parse(await readFile(join(dir, name), 'utf8'))))
        } catch {
          corrupt.push(name.slice(0, -'.json'.length))
        }
      }
      return { records, corrupt }
    },
  }
}
