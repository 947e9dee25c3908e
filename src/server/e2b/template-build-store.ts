/**
 * The e2b SDK's template builds, in memory: each with its status and log for the SDK's polling,
 * and a temp dir under the data dir for its uploaded files, removed when the build ends. A build
 * is `waiting` from the SDK's request until it sends what to build, then `building`, then `ready`
 * or `error`. One build per template name at a time: the SDK asks for upload links by template,
 * not by build; a newer request stops the one before, running or not, as E2B does.
 */
import { randomUUID } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { SandstormError } from '../../shared/index.js'
import type { BuildLogEntry, BuildLogLevel, BuildStatus, BuildStatusReason } from './template-build-wire.js'

/** Most log lines one build keeps (the rest are dropped, with a line saying so). */
const maxLogEntries = 20_000
/** Builds waiting for their files or running, at once (each a temp dir with its uploads). */
const maxOpenBuilds = 64
/** Longest log line kept. */
export const maxLineChars = 4096
/** Most characters of log lines one build keeps (20,000 lines of 4096 were 80 MB a build, for each of 64 builds kept). */
const maxLogChars = 8 * 1024 * 1024

/** One build of a template. */
export interface TemplateBuildRecord {
  readonly buildId: string
  /** The template's name (E2B's template id and alias alike). */
  readonly name: string
  readonly memoryMiB?: number
  readonly cpus?: number
  /** The build's temp dir: `uploads/<hash>` for the SDK's tarballs, `context/` for the build. */
  readonly dir: string
  status: BuildStatus
  readonly log: BuildLogEntry[]
  /** Characters of `log`'s lines so far, and whether it was cut (nothing more is kept). */
  logChars: number
  logCut: boolean
  reason?: BuildStatusReason
  /** The files hashes whose upload completed. */
  readonly uploaded: Set<string>
  /** Uploads under way (each refused past the build's limit with the completed ones). */
  receiving: number
  /** Aborts the build (and a waiting build's uploads): a newer request, or the server closing. */
  readonly controller: AbortController
}

/** Options of createTemplateBuildStore. */
export interface TemplateBuildStoreOptions {
  /** Where builds keep their temp dirs (emptied at start: a crash's leftovers). */
  dir: string
  /** Finished builds kept for status polls. @default 64 */
  maxFinished?: number
  /** A build the SDK requested but never started is dropped after this long. @default 30 minutes */
  waitingTtlMs?: number
}

/** The builds of this server. */
export interface TemplateBuildStore {
  /** A new `waiting` build of `name`; a waiting one of that name is dropped, a running one aborted and waited for until it has ended. */
  request(name: string, size: { memoryMiB?: number; cpus?: number }): Promise<TemplateBuildRecord>
  /** The build, or not_found naming it. */
  get(name: string, buildId: string): TemplateBuildRecord
  /** The build of `name` that awaits its files and start, or not_found. */
  waiting(name: string): TemplateBuildRecord
  /** Appends a log line. */
  log(build: TemplateBuildRecord, level: BuildLogLevel, message: string, step?: string): void
  /** Ends a build: its status, why it failed, and its temp dir removed. Safe to call twice. */
  finish(build: TemplateBuildRecord, status: 'ready' | 'error', reason?: BuildStatusReason): Promise<void>
  /** Aborts every build and removes every temp dir. */
  close(): Promise<void>
}

/** The store of the e2b SDK's builds. */
export function createTemplateBuildStore(options: TemplateBuildStoreOptions): TemplateBuildStore {
  const maxFinished = options.maxFinished ?? 64
  const waitingTtlMs = options.waitingTtlMs ?? 30 * 60_000
  const builds = new Map<string, TemplateBuildRecord>()
  const finished: string[] = []
  const timers = new Map<string, NodeJS.Timeout>()
  const ending = new Set<string>()
  // Each open build's end, resolved by finish(): what a newer request waits on after aborting it.
  const endings = new Map<string, { ended: Promise<void>; resolve: () => void }>()
  // A crash leaves temp dirs behind; no build of this process is in there yet.
  const swept = rm(options.dir, { recursive: true, force: true })

  const current = (name: string): TemplateBuildRecord | undefined =>
    [...builds.values()].find((b) => b.name === name && (b.status === 'waiting' || b.status === 'building'))

  const store: TemplateBuildStore = {
    async request(name, size) {
      await swept
      // Another request may come while this one waits: each looks again once the one before ended.
      for (let before = current(name); before; before = current(name)) {
        const end = endings.get(before.buildId)?.ended
        if (before.status === 'waiting') await store.finish(before, 'error', { message: 'superseded by a newer build of the same template before it started' })
        // A running one is ended by its run (finish) once its build sandbox and whatever it made are gone.
        else before.controller.abort(new SandstormError('canceled', `superseded by a newer build of template "${name}"`))
        await end
      }
      // Each waiting build holds a temp dir and its uploads for up to waitingTtlMs: a bound on them all.
      const open = [...builds.values()].filter((b) => b.status === 'waiting' || b.status === 'building').length
      if (open >= maxOpenBuilds) throw new SandstormError('resource_exhausted', `${open} template builds are waiting or running, the most at once: expected one to end first`)
      const buildId = randomUUID()
      const build: TemplateBuildRecord = {
        buildId,
        name,
        ...size,
        dir: join(options.dir, buildId),
        status: 'waiting',
        log: [],
        logChars: 0,
        logCut: false,
        uploaded: new Set(),
        receiving: 0,
        controller: new AbortController(),
      }
      // Claimed with no wait since the look above: requests that waited on the same build find it.
      builds.set(buildId, build)
      let resolve!: () => void
      endings.set(buildId, { ended: new Promise<void>((r) => (resolve = r)), resolve })
      try {
        await mkdir(join(build.dir, 'uploads'), { recursive: true, mode: 0o700 })
      } catch (err) {
        await store.finish(build, 'error', { message: 'its temp dir could not be made' })
        throw err
      }
      const timer = setTimeout(() => {
        if (build.status === 'waiting') void store.finish(build, 'error', { message: `never started: expected the template within ${waitingTtlMs} ms of the request` })
      }, waitingTtlMs)
      timer.unref()
      timers.set(buildId, timer)
      return build
    },

    get(name, buildId) {
      const build = builds.get(buildId)
      if (!build || build.name !== name) throw new SandstormError('not_found', `build "${buildId}" of template "${name}" not found`)
      return build
    },

    waiting(name) {
      const build = current(name)
      if (build?.status !== 'waiting') {
        throw new SandstormError('not_found', `template "${name}" has no build awaiting its files: expected POST /v3/templates first`)
      }
      return build
    },

    log(build, level, message, step) {
      // Builds are kept in memory for polling: a chatty one must not grow without end.
      if (build.logCut) return
      build.logChars += Math.min(message.length, maxLineChars)
      build.logCut = build.log.length === maxLogEntries || build.logChars > maxLogChars
      const entry = build.logCut ? { level: 'warn' as const, message: `log cut at ${build.log.length} lines (${maxLogEntries} lines or ${maxLogChars} characters at most)` } : { level, message: message.length > maxLineChars ? `${message.slice(0, maxLineChars)}...` : message }
      build.log.push({ timestamp: new Date().toISOString(), ...entry, ...(step !== undefined ? { step } : {}) })
    },

    async finish(build, status, reason) {
      if (ending.has(build.buildId) || build.status === 'ready' || build.status === 'error') return
      ending.add(build.buildId)
      build.controller.abort(new SandstormError('canceled', `build ${build.buildId} ended`))
      clearTimeout(timers.get(build.buildId))
      timers.delete(build.buildId)
      try {
        // The status is what the SDK waits on: once it says ended, the temp dir is gone.
        await rm(build.dir, { recursive: true, force: true })
      } finally {
        // Ended even when its dir would not go: a newer request of the name waits on this.
        ending.delete(build.buildId)
        build.status = status
        if (reason) build.reason = reason
        finished.push(build.buildId)
        while (finished.length > maxFinished) builds.delete(finished.shift()!)
        endings.get(build.buildId)?.resolve()
        endings.delete(build.buildId)
      }
    },

    async close() {
      for (const build of builds.values()) build.controller.abort(new SandstormError('unavailable', 'the server is shutting down'))
      for (const timer of timers.values()) clearTimeout(timer)
      await swept
      await rm(options.dir, { recursive: true, force: true })
    },
  }
  return store
}
