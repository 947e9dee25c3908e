/**
 * A real Sandstorm for integration tests: the server and the local agent (real runc, real
 * SQLite, a real socket on 127.0.0.1 port 0) over a temporary data dir. Templates come from the
 * store that setup built, so tests never run debootstrap.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLocalAgent, type AgentApi, type LocalAgentOptions } from '../../src/agent/index.js'
import { startServer, type RunningServer } from '../../src/server/index.js'
import { createLogger, silentLogger, type Logger } from '../../src/shared/index.js'
import { linkSharedGuest, sharedDebianRoot } from './qemu-guest.js'
import { mountsUnder } from './leftovers.js'

/** Where setup built the default templates. */
export const templatesDir =
  process.env.SANDSTORM_TEMPLATES_DIR ?? join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'templates')

/** Why integration tests cannot run here, or null when they can. */
export function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'integration tests need root (runc, mounts, cgroups)'
  if (!existsSync(join(templatesDir, 'debian', 'current', 'template.json'))) return `no debian template in ${templatesDir}: run scripts/setup.sh`
  return null
}

/** A running server and agent, with SDK connection options for it. */
export interface Stack {
  dataDir: string
  server: RunningServer
  agent: AgentApi
  /** Pass to every SDK call: `Sandbox.create('debian', { ...stack.conn })`. */
  conn: { apiUrl: string; apiKey: string }
  /** Stops server and agent, keeping the data dir and the sandboxes (for restart tests). */
  stop(): Promise<void>
  /** Starts server and agent again on the same data dir (a new port). */
  restart(): Promise<Stack>
  /** Stops, destroys every sandbox left, and removes the data dir. */
  close(): Promise<void>
}

/** Options of startStack. */
export interface StackOptions {
  /** Reuse a data dir (restart tests). @default a new temporary dir */
  dataDir?: string
  maxFileBytes?: number
  defaultTimeoutMs?: number
  /** How often the server asks the agent which sandboxes stopped on their own. @default the server's */
  stateWatchMs?: number
  /** How often every sandbox's usage is sampled. @default the server's (5 s) */
  metricsIntervalMs?: number
  /** The agent's networking: give a test internet's /24 as public and its DNS server as upstream. */
  network?: LocalAgentOptions['network']
  /** The server's egress for creates that name none. @default 'all' */
  defaultEgress?: 'all' | 'none'
  /** Registries the agent pulls from over plain HTTP, on loopback too (a test's docker-registry). @default none */
  insecureRegistries?: string[]
  /** The most one image layer may unpack to. @default the agent's */
  maxLayerBytes?: number
  /** Templates of the agent. @default the store that setup built */
  templatesDir?: string
  /** The runtime of a create that names none. @default the server's (runc) */
  defaultRuntime?: string
  /** An image template build running longer fails. @default the server's (1 hour) */
  buildTimeoutMs?: number
  /** A paused machine is written to disk after this long. @default never */
  hibernateAfterMs?: number
  /** @default silent (or debug lines with SANDSTORM_TEST_LOGS set) */
  logger?: Logger
}

/** Starts a real server and agent. */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'sandstorm-test-')))
  const logger = options.logger ?? (process.env.SANDSTORM_TEST_LOGS ? createLogger({ level: 'debug' }) : silentLogger())
  // A qemu sandbox boots the guest that setup built for the shared templates, not one of its own.
  if (!options.templatesDir) await linkSharedGuest(dataDir, await sharedDebianRoot(templatesDir)).catch(() => undefined)
  const agent = await createLocalAgent({ dataDir, templatesDir: options.templatesDir ?? templatesDir, logger, network: options.network, ...(options.insecureRegistries ? { insecureRegistries: options.insecureRegistries } : {}), ...(options.maxLayerBytes ? { maxLayerBytes: options.maxLayerBytes } : {}) })
  // A server that fails to start stops the agent it was given: its network and spares would keep the test process alive.
  const server = await startServer({
    dataDir,
    agent,
    port: 0,
    logger,
    maxFileBytes: options.maxFileBytes,
    defaultTimeoutMs: options.defaultTimeoutMs,
    stateWatchMs: options.stateWatchMs,
    metricsIntervalMs: options.metricsIntervalMs,
    defaultEgress: options.defaultEgress,
    defaultRuntime: options.defaultRuntime,
    hibernateAfterMs: options.hibernateAfterMs,
    buildTimeoutMs: options.buildTimeoutMs,
  }).catch(async (err: unknown) => {
    await agent.close()
    throw err
  })
  const stop = async () => {
    await server.close()
    await agent.close()
  }
  const stack: Stack = {
    dataDir,
    server,
    agent,
    conn: { apiUrl: server.url, apiKey: server.apiKey },
    stop,
    restart: () => startStack({ ...options, dataDir }),
    async close() {
      for (const s of await agent.list()) await agent.destroy(s.id).catch(() => undefined)
      await stop()
      // A stopped agent leaves nothing mounted (no sandbox root or disk, no spare disk), and rm must not reach into a mount.
      const mounted = await mountsUnder(dataDir)
      if (mounted.length > 0) throw new Error(`the stopped stack left mounts under its data dir: ${mounted.join(', ')}`)
      await rm(dataDir, { recursive: true, force: true })
    },
  }
  return stack
}

/** A stack building into a templates dir of its own, and a build context that holds `dockerfile`. */
export interface BuildStack {
  stack: Stack
  /** The build context dir. */
  ctx: string
  /** The stack's templates dir (setup's debian linked in). */
  templatesDir: string
  /** Closes the stack, then removes its templates dir and the context. */
  close(): Promise<void>
}

/** A stack over a templates dir of its own, with a build context holding `dockerfile` as `Dockerfile`. */
export async function startBuildStack(dockerfile: string, options: StackOptions = {}): Promise<BuildStack> {
  const ctx = await mkdtemp(join(tmpdir(), 'sandstorm-build-ctx-'))
  await writeFile(join(ctx, 'Dockerfile'), dockerfile)
  const templates = await scratchTemplatesDir()
  const stack = await startStack({ ...options, templatesDir: templates.dir }).catch(async (err: unknown) => {
    await templates.remove()
    await rm(ctx, { recursive: true, force: true })
    throw err
  })
  return {
    stack,
    ctx,
    templatesDir: templates.dir,
    async close() {
      await stack.close()
      await templates.remove()
      await rm(ctx, { recursive: true, force: true })
    },
  }
}

/**
 * A template dir of a test's own, holding links to templates that setup built (`debian` by
 * default): image templates built in it, and their layers, go with it.
 */
export async function scratchTemplatesDir(shared: string[] = ['debian']): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-test-templates-'))
  for (const name of shared) await symlink(join(templatesDir, name), join(dir, name))
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) }
}
