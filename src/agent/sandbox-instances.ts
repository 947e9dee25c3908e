/**
 * Which runtime instance runs each sandbox, and which writable layer it runs on. A sandbox starts
 * as the instance of its own id, on the layer of that id. A restore in place (the runtime's
 * `renew`) keeps the instance and gives it a new layer (`relayer`); a restore the runtime cannot
 * do in place starts a new instance under a fresh id beside the old one, points the sandbox at it
 * and removes the old one off the caller's path. Everything above the agent sees the sandbox id only.
 *
 *   <file>   { "aliases": { sandboxId: instanceId }, "retired": [instanceId], "layers": { instanceId: layerId } }
 */
import { renameSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { idPattern, silentLogger, type Logger } from '../shared/index.js'
import type { RuntimeBackend } from '../runtime/index.js'

const fileSchema = z.object({
  aliases: z.record(z.string().regex(idPattern), z.string().regex(idPattern)),
  retired: z.array(z.string().regex(idPattern)),
  /** An instance's layer where it is not the instance's own id (it was restored in place). */
  layers: z.record(z.string().regex(idPattern), z.string().regex(idPattern)).default({}),
})

/** Backend methods whose first argument is a sandbox id. */
const byIdMethods = [
  'destroy',
  'pause',
  'resume',
  'freeze',
  'thaw',
  'renew',
  'saveMachine',
  'stats',
  'exec',
  'readFile',
  'writeFile',
  'listDir',
  'stat',
  'mkdir',
  'remove',
  'rename',
  'resolveUser',
] as const

/** Sandbox ids and the runtime instances that run them. */
export interface SandboxInstances {
  /** The instance that runs sandbox `sandboxId` now (its own id until it is restored). */
  of(sandboxId: string): string
  /** The writable layer of instance `instanceId` (its own id until it is restored in place). */
  layerOfInstance(instanceId: string): string
  /** The writable layer sandbox `sandboxId` runs on now. */
  layerOf(sandboxId: string): string
  /** Records that sandbox `sandboxId`'s instance runs on layer `layerId` now, on disk before it resolves; returns its layer before. */
  relayer(sandboxId: string, layerId: string): Promise<string>
  /**
   * Points `sandboxId` at the running instance `instanceId` and marks its previous instance
   * retired, on disk before it resolves; returns the previous instance, for `retire`.
   */
  point(sandboxId: string, instanceId: string): Promise<string>
  /**
   * Removes a retired instance with `teardown` in the background (the caller does not wait);
   * it is dropped from the retired list once that succeeded. `drain` waits for every teardown.
   */
  retire(instanceId: string, teardown: () => Promise<void>): void
  /** Forgets a destroyed sandbox's alias. */
  forget(sandboxId: string): Promise<void>
  /** Instances retired but maybe not yet removed (after a crash, say). */
  retired(): string[]
  /** Resolves once every teardown started so far has ended. */
  drain(): Promise<void>
  /** `backend` with every call on a sandbox id sent to its current instance; `list` answers in sandbox ids and hides retired instances. */
  wrap(backend: RuntimeBackend): RuntimeBackend
  /** The backend that `wrap` was given: calls on it take instance ids. */
  unwrap(backend: RuntimeBackend): RuntimeBackend
}

/** Opens the instance record in `file` (made on first write). */
export async function createSandboxInstances(file: string, logger?: Logger): Promise<SandboxInstances> {
  const log = logger ?? silentLogger()
  let state: z.infer<typeof fileSchema> = { aliases: {}, retired: [], layers: {} }
  try {
    state = fileSchema.parse(JSON.parse(await readFile(file, 'utf8')))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.error({ err, file }, 'instance record unreadable; starting from none')
  }
  const sandboxOf = () => new Map(Object.entries(state.aliases).map(([s, i]) => [i, s]))
  let reverse = sandboxOf()
  const raw = new WeakMap<RuntimeBackend, RuntimeBackend>()
  const teardowns = new Set<Promise<void>>()
  // Each write is whole (a temporary file renamed over the record), so that a crash leaves the old
  // or the new record. Synchronous: the record is a few hundred bytes, and on a restore's path the
  // async calls waited several ms in libuv's pool behind the teardown of the instance before.
  const save = async (): Promise<void> => {
    reverse = sandboxOf()
    writeFileSync(`${file}.tmp`, JSON.stringify(state), { mode: 0o600 })
    renameSync(`${file}.tmp`, file)
  }
  const of = (sandboxId: string): string => state.aliases[sandboxId] ?? sandboxId
  const layerOfInstance = (instanceId: string): string => state.layers[instanceId] ?? instanceId
  const withoutLayer = (instanceId: string) => Object.fromEntries(Object.entries(state.layers).filter(([i]) => i !== instanceId))

  return {
    of,
    layerOfInstance,
    layerOf: (sandboxId) => layerOfInstance(of(sandboxId)),
    async relayer(sandboxId, layerId) {
      const instanceId = of(sandboxId)
      const previous = layerOfInstance(instanceId)
      state = { ...state, layers: layerId === instanceId ? withoutLayer(instanceId) : { ...state.layers, [instanceId]: layerId } }
      await save()
      return previous
    },
    async point(sandboxId, instanceId) {
      const previous = of(sandboxId)
      state = {
        ...state,
        aliases: { ...state.aliases, [sandboxId]: instanceId },
        retired: [...state.retired.filter((i) => i !== instanceId), previous],
      }
      if (instanceId === sandboxId) delete state.aliases[sandboxId]
      await save()
      return previous
    },
    retire(instanceId, teardown) {
      const run = teardown().then(
        async () => {
          state = { ...state, retired: state.retired.filter((i) => i !== instanceId), layers: withoutLayer(instanceId) }
          await save()
        },
        (err: unknown) => log.error({ instanceId, err }, 'could not remove a retired sandbox instance; it is tried again on the next start'),
      )
      const tracked = run.catch(() => undefined)
      teardowns.add(tracked)
      void tracked.then(() => teardowns.delete(tracked))
    },
    async forget(sandboxId) {
      const instanceId = of(sandboxId)
      if (!(sandboxId in state.aliases) && !(instanceId in state.layers)) return
      const { [sandboxId]: _gone, ...aliases } = state.aliases
      state = { ...state, aliases, layers: withoutLayer(instanceId) }
      await save()
    },
    retired: () => [...state.retired],
    async drain() {
      while (teardowns.size > 0) await Promise.all([...teardowns])
    },
    wrap(backend) {
      const wrapped = Object.create(backend) as RuntimeBackend
      const loose = wrapped as unknown as Record<string, unknown>
      for (const name of byIdMethods) {
        const method = (backend as unknown as Record<string, unknown>)[name]
        if (typeof method !== 'function') continue
        loose[name] = (id: string, ...rest: unknown[]) => (method as (...a: unknown[]) => unknown).call(backend, of(id), ...rest)
      }
      wrapped.create = (spec, options) => backend.create({ ...spec, id: of(spec.id) }, options)
      wrapped.list = async (options) => {
        const retired = new Set(state.retired)
        return (await backend.list(options)).filter((s) => !retired.has(s.id)).map((s) => ({ ...s, id: reverse.get(s.id) ?? s.id }))
      }
      raw.set(wrapped, backend)
      return wrapped
    },
    unwrap: (backend) => raw.get(backend) ?? backend,
  }
}
