/**
 * A real Sandstorm to benchmark: the server and the local agent (real runc) over a temporary data
 * dir, on 127.0.0.1 port 0, with silent logs so that logging is not what gets measured.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { createLocalAgent, type AgentApi, type LocalAgentOptions } from '../src/agent/index.js'
import { startServer, type RunningServer } from '../src/server/index.js'
import { silentLogger } from '../src/shared/index.js'

/** Where setup built the default templates. */
export const templatesDir =
  process.env.SANDSTORM_TEMPLATES_DIR ?? join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'templates')

/** A running server and agent to benchmark. */
export interface BenchStack {
  dataDir: string
  /** runc's state dir of this stack's sandboxes (`runc --root`). */
  runcRoot: string
  server: RunningServer
  agent: AgentApi
  /** SDK connection options: `Sandbox.create('debian', { ...stack.conn })`. */
  conn: { apiUrl: string; apiKey: string }
  /** Every sandbox id a benchmark made here, for the check that close left no cgroup behind. */
  ids: Set<string>
  /** Destroys every sandbox left, stops, checks that nothing is left and removes the data dir; returns what was left. */
  close(): Promise<string[]>
}

/** Why the benchmarks cannot run here, or null when they can. */
export function stackSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'the benchmarks need root (runc, mounts, cgroups)'
  if (!existsSync(join(templatesDir, 'debian', 'current', 'template.json'))) return `no debian template in ${templatesDir}: run scripts/setup.sh`
  return null
}

/** Options of startBenchStack. */
export interface BenchStackOptions {
  /** Put the layer store on a btrfs loop file of this many MiB (as `sandstorm setup --btrfs-loop` does). */
  btrfsMiB?: number
  /**
   * Mount options of that btrfs loop file. `nobarrier` drops the cache flush of every transaction
   * commit (an fsync of the loop file, the most of a subvolume snapshot's time) at the price of
   * the store's integrity across a host crash. @default [] (as setup mounts it)
   */
  btrfsMountOptions?: string[]
  /** Registries the agent pulls from over plain HTTP, on loopback too (the benchmark's docker-registry). @default none */
  insecureRegistries?: string[]
  /** The agent's networking (a test internet's public range and DNS server, say). @default the agent's defaults */
  network?: LocalAgentOptions['network']
  /** The agent's template dir (a bench's own, for image templates and their layers). @default setup's */
  templatesDir?: string
  /** Quota disks kept formatted and mounted ahead (0: each made on the spot). @default the agent's (defaultSpareDisks) */
  spareDisks?: number
}

/** Starts a server and an agent over a new temporary data dir. */
export async function startBenchStack(options: BenchStackOptions = {}): Promise<BenchStack> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-bench-'))
  const runcRoot = join(dataDir, 'runc')
  const logger = silentLogger()
  const templates = options.templatesDir ?? templatesDir
  let agent: AgentApi | undefined
  const btrfs = options.btrfsMiB ? await mountBtrfsStore(dataDir, options.btrfsMiB, options.btrfsMountOptions ?? []) : undefined
  try {
    agent = await createLocalAgent({ dataDir, templatesDir: templates, logger, storageDriver: btrfs ? 'btrfs' : undefined, network: options.network, ...(options.insecureRegistries ? { insecureRegistries: options.insecureRegistries } : {}), ...(options.spareDisks !== undefined ? { spareDisks: options.spareDisks } : {}) })
    // A long default lifetime: no sandbox may expire while a benchmark holds it.
    const server = await startServer({ dataDir, agent, port: 0, logger, defaultTimeoutMs: 30 * 60_000 })
    const live = agent
    const ids = new Set<string>()
    return {
      dataDir,
      runcRoot,
      server,
      agent,
      conn: { apiUrl: server.url, apiKey: server.apiKey },
      ids,
      async close() {
        for (const s of await live.list()) await live.destroy(s.id).catch(() => undefined)
        await server.close()
        await live.close()
        let left = await leftovers(dataDir, runcRoot, ids, btrfs?.mountPoint)
        if (left.length > 0) {
          // An agent forgets a sandbox whose destroy failed half-way; a new agent on the same data
          // dir finds it again (adoption removes stopped ones and takes over running ones).
          const again = await createLocalAgent({ dataDir, templatesDir: templates, logger })
          for (const s of await again.list()) await again.destroy(s.id).catch(() => undefined)
          await again.close()
          left = await leftovers(dataDir, runcRoot, ids, btrfs?.mountPoint)
        }
        await btrfs?.unmount()
        if (left.length === 0) await rm(dataDir, { recursive: true, force: true })
        return left
      },
    }
  } catch (err) {
    await agent?.close()
    await btrfs?.unmount()
    await rm(dataDir, { recursive: true, force: true })
    throw err
  }
}

/** A btrfs filesystem on a loop file, mounted at `<dataDir>/storage` (the layer store). */
async function mountBtrfsStore(dataDir: string, sizeMiB: number, mountOptions: string[]) {
  const image = join(dataDir, 'storage.btrfs')
  const mountPoint = join(dataDir, 'storage')
  await execa('truncate', ['-s', `${sizeMiB}M`, image])
  await execa('mkfs.btrfs', ['-q', image])
  await execa('mkdir', ['-p', mountPoint])
  await execa('mount', ['-o', ['loop', ...mountOptions].join(','), image, mountPoint])
  return {
    mountPoint,
    async unmount() {
      await execa('umount', [mountPoint], { reject: false })
      await rm(image, { force: true })
    },
  }
}

/** Containers and mounts of this data dir still there after close (the data dir is then kept for a look). */
async function leftovers(dataDir: string, runcRoot: string, ids: Set<string>, storeMount?: string): Promise<string[]> {
  const left: string[] = []
  const list = await execa('runc', ['--root', runcRoot, 'list', '--quiet'], { reject: false })
  for (const id of list.stdout.split('\n').filter(Boolean)) left.push(`runc container ${id} (runc --root ${runcRoot})`)
  const mounts = await readFile('/proc/self/mountinfo', 'utf8')
  for (const line of mounts.split('\n')) {
    const target = line.split(' ')[4]
    // The btrfs store's own mount is the bench's, removed after this check.
    if (target?.startsWith(dataDir) && target !== storeMount) left.push(`mount ${target}`)
  }
  for (const id of ids) {
    for (const controller of ['memory', 'pids', 'freezer', 'cpu', 'blkio', 'devices']) {
      const dir = join('/sys/fs/cgroup', controller, 'sandstorm', id)
      if (existsSync(dir)) left.push(`cgroup ${dir}`)
    }
  }
  return left
}
