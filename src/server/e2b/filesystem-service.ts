/** envd's `filesystem.Filesystem` service: stat, list, make, move, remove and watch, inside the sandbox. */
import type { MessageInitShape } from '@bufbuild/protobuf'
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect'
import { z } from 'zod'
import type { AgentApi } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { SandboxService } from '../sandbox-service.js'
import type { AccessTokens } from '../access-tokens.js'
import { entryOf } from './entry-info.js'
import type { EntryInit } from './entry-info.js'
import { listEntries, statEntry } from './entry-listing.js'
import type { HelperSlots } from './helper-slots.js'
import { envdScope, resolvePath } from './envd-scope.js'
import type { EnvdScope } from './envd-scope.js'
import { EventType } from './gen/filesystem/filesystem_pb.js'
import type { Filesystem, WatchDirResponseSchema } from './gen/filesystem/filesystem_pb.js'
import type { ProcessRegistry } from './process-registry.js'
import { helperError, runChecked } from './sandbox-run.js'
import { watchArgv } from './watch-helper.js'
import { goneWaitMs, sandboxDying, untilAborted } from './sandbox-exits.js'
import type { SandboxExits } from './sandbox-exits.js'
import { severCall } from './severed-streams.js'

/** What the service needs. */
export interface FilesystemServiceDeps {
  agent: AgentApi
  sandboxes: SandboxService
  tokens: AccessTokens
  registry: ProcessRegistry
  shutdownSignal: AbortSignal
  /** When a sandbox stops running: its watches are cut then, as E2B's. */
  exits: SandboxExits
  /** Turns per sandbox for the helpers of these calls. */
  helperSlots: HelperSlots
}

/** Deepest listing a ListDir may ask for. */
const maxDepth = 64
/** The longest line a watcher prints (an event names a path of at most 4 KiB, and its entry). */
const maxWatcherLine = 256 * 1024
/** The most of a watcher's stderr kept, for the error that ends it. */
const maxWatcherStderr = 64 * 1024

const eventTypes: Record<string, EventType> = {
  create: EventType.CREATE,
  write: EventType.WRITE,
  remove: EventType.REMOVE,
  rename: EventType.RENAME,
  chmod: EventType.CHMOD,
}

/** One line of the watcher: an event's type, name and (asked for) entry. */
const watcherLine = z.object({ t: z.string(), n: z.string(), e: z.array(z.string()).optional() })

/** A watcher's line as an event; a line that is none ends the watch with an error that says so. */
function watchEventOf(line: string, path: string): { name: string; type: EventType; entry?: EntryInit } {
  try {
    const { t, n, e } = watcherLine.parse(JSON.parse(line))
    return { name: n, type: eventTypes[t] ?? EventType.UNSPECIFIED, ...(e ? { entry: entryOf(e) } : {}) }
  } catch {
    throw new SandstormError('failed_precondition', `watch ${path}: the watcher printed a line that is no event (is python3 in the sandbox its own?)`)
  }
}

/** The implementation registered on the Connect router. */
export function createFilesystemService(deps: FilesystemServiceDeps): Partial<ServiceImpl<typeof Filesystem>> {
  const { agent, sandboxes, tokens, registry, shutdownSignal, exits, helperSlots } = deps
  const scopeOf = (ctx: HandlerContext): EnvdScope => envdScope(ctx.requestHeader, sandboxes, tokens)

  /** A helper follows the call, and is hidden from `commands.list`. */
  const call = (scope: EnvdScope, ctx: HandlerContext) => ({ signal: ctx.signal, onPid: (pid: number) => registry.hide(scope.sandboxId, pid) })
  const listing = (scope: EnvdScope, ctx: HandlerContext) => ({ ...call(scope, ctx), slots: helperSlots })

  /** Helpers that change things run as the caller, as envd's do; in turn with the sandbox's other helpers. */
  const run = (scope: EnvdScope, op: string, path: string, argv: string[], ctx: HandlerContext) =>
    helperSlots.run(scope.sandboxId, () => runChecked(agent, scope.sandboxId, op, path, argv, { ...call(scope, ctx), user: scope.user }), { signal: ctx.signal })

  // Helpers that read run as root.
  const stat = async (scope: EnvdScope, path: string, ctx: HandlerContext): Promise<EntryInit> => {
    const entry = await statEntry(agent, scope.sandboxId, 'stat', path, listing(scope, ctx))
    if (!entry) throw new SandstormError('not_found', `stat ${path}: no such file or directory`)
    return entry
  }

  return {
    async stat(req, ctx) {
      const scope = scopeOf(ctx)
      return { entry: await stat(scope, resolvePath(scope, req.path), ctx) }
    },

    async listDir(req, ctx) {
      const scope = scopeOf(ctx)
      const path = resolvePath(scope, req.path)
      const depth = Math.min(Math.max(req.depth || 1, 1), maxDepth)
      const entries = await listEntries(agent, scope.sandboxId, path, depth, listing(scope, ctx))
      return { entries: entries.sort((a, b) => (a.path! < b.path! ? -1 : 1)) }
    },

    async makeDir(req, ctx) {
      const scope = scopeOf(ctx)
      const path = resolvePath(scope, req.path)
      const script = '[ -e "$1" ] && { echo "$1: File exists" >&2; exit 1; }; exec mkdir -p -- "$1"'
      await run(scope, 'make dir', path, ['/bin/sh', '-c', script, 'e2b-mkdir', path], ctx)
      return { entry: await stat(scope, path, ctx) }
    },

    async move(req, ctx) {
      const scope = scopeOf(ctx)
      const from = resolvePath(scope, req.source)
      const to = resolvePath(scope, req.destination)
      const script = '[ -e "$1" ] || [ -L "$1" ] || { echo "$1: No such file or directory" >&2; exit 1; }; mkdir -p -- "$(dirname -- "$2")" && exec mv -f -T -- "$1" "$2"'
      await run(scope, 'move', from, ['/bin/sh', '-c', script, 'e2b-mv', from, to], ctx)
      return { entry: await stat(scope, to, ctx) }
    },

    async remove(req, ctx) {
      const scope = scopeOf(ctx)
      const path = resolvePath(scope, req.path)
      // A path that is not there is removed already: no error, as envd (os.RemoveAll).
      await run(scope, 'remove', path, ['/bin/rm', '-rf', '--', path], ctx)
      return {}
    },

    async *watchDir(req, ctx): AsyncGenerator<MessageInitShape<typeof WatchDirResponseSchema>> {
      const scope = scopeOf(ctx)
      const path = resolvePath(scope, req.path)
      const left = exits.signalFor(scope.sandboxId)
      const signal = AbortSignal.any([ctx.signal, shutdownSignal, left])
      const entry = await stat(scope, path, ctx)
      if (entry.type !== 2) throw new SandstormError('invalid_argument', `watch ${path}: not a directory`)
      // allowNetworkMounts is not needed: envd refuses network mounts without it, a sandbox here has none to refuse.
      const { pid } = await agent.exec(scope.sandboxId, { argv: watchArgv(path, req.recursive, req.includeEntry), env: {}, user: scope.user }, { signal })
      registry.hide(scope.sandboxId, pid)
      try {
        let ready = false
        let pending = ''
        let stderr = ''
        for await (const event of agent.follow(scope.sandboxId, pid, { signal })) {
          if (event.type === 'stderr' && stderr.length < maxWatcherStderr) stderr += Buffer.from(event.data, 'base64').toString('utf8').slice(0, maxWatcherStderr - stderr.length)
          if (event.type === 'end') {
            // A watcher that its sandbox's death ended: the stream is cut, as a command's (process-service.ts).
            if (!left.aborted && !sandboxDying(scope.sandboxId, sandboxes)) throw helperError('watch', path, stderr || 'the watcher ended')
            await untilAborted(left, goneWaitMs)
            break
          }
          if (event.type !== 'stdout') continue
          pending += Buffer.from(event.data, 'base64').toString('utf8')
          const lines = pending.split('\n')
          pending = lines.pop() ?? ''
          // The watcher runs the sandbox's python3: a line no event makes is the sandbox's doing.
          if (pending.length > maxWatcherLine) throw new SandstormError('failed_precondition', `watch ${path}: the watcher printed a line longer than ${maxWatcherLine} characters (is python3 in the sandbox its own?)`)
          for (const line of lines) {
            if (!ready) {
              ready = line === 'ready'
              if (ready) yield { event: { case: 'start' as const, value: {} } }
              continue
            }
            yield { event: { case: 'filesystem' as const, value: watchEventOf(line, path) } }
          }
        }
        if (left.aborted || sandboxDying(scope.sandboxId, sandboxes)) severCall(ctx, new SandstormError('unavailable', `sandbox "${scope.sandboxId}" is not running anymore`))
      } finally {
        await agent.signal(scope.sandboxId, pid, 'SIGKILL').catch(() => undefined)
      }
    },
  }
}

