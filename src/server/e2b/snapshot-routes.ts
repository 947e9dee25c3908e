/**
 * E2B's snapshots and forks (header `X-API-KEY`), on Sandstorm's own snapshots: a layer of the
 * filesystem on runc, the whole machine (memory included) on qemu.
 *
 * - `POST /sandboxes/:id/snapshots` takes one (`createSnapshot`); its id, or its name, is then a
 *   template for `Sandbox.create`.
 * - `GET /snapshots` lists them, newest first, paged with `X-Next-Token` (`listSnapshots`).
 * - `DELETE /templates/:id` deletes one (`deleteSnapshot`: E2B's snapshots are templates).
 * - `POST /sandboxes/:id/fork` snapshots a running sandbox once and starts `count` sandboxes from it.
 */
import type { Hono } from 'hono'
import { z } from 'zod'
import type { AgentApi, AgentSnapshot } from '../../agent/index.js'
import { limits, SandstormError } from '../../shared/index.js'
import type { Logger, SandboxInfo } from '../../shared/index.js'
import type { ServerEnv } from '../context.js'
import type { SandboxLifecycle } from '../sandbox-lifecycle.js'
import type { CreateSandboxInput, SandboxService } from '../sandbox-service.js'
import type { SnapshotService } from '../snapshot-service.js'
import { parseInput } from '../validation.js'
import { jsonOf } from '../request-input.js'
import { restErrorBody } from './errors.js'

/** What the routes need. */
export interface SnapshotRoutesDeps {
  sandboxes: SandboxService
  /** The templates a snapshot's name may not take. */
  agent: Pick<AgentApi, 'templates'>
  /** Absent when the agent's storage cannot take snapshots: the routes answer 409 then. */
  snapshots?: SnapshotService
  logger: Logger
  /** E2B's answer for a started sandbox (ids, tokens, domain), as create gives it. */
  answer(info: SandboxInfo): object
  /** E2B's default lifetime of a sandbox, in seconds. */
  defaultTimeoutS: number
}

/** The most sandboxes one fork starts (as Sandstorm's own fork). */
export const maxForkCount = 256

const maxTimeoutS = Math.floor(limits.maxTimeoutMs / 1000)

const snapshotBody = z.looseObject({
  name: z.string().min(1).max(256).regex(/^[^\0]*$/, 'a name without NUL bytes').optional(),
})
const listQuery = z.looseObject({
  sandboxID: z.string().optional(),
  name: z.string().optional(),
  limit: z.coerce.number().int().positive().max(1000).optional(),
  nextToken: z.string().optional(),
})
const forkRequest = z.looseObject({
  count: z.number().int().min(1).max(maxForkCount).optional(),
  timeout: z.number().int().positive().max(maxTimeoutS).optional(),
})

/** What a create from a snapshot starts with: the snapshot's template, size and env, the request's own labels, env and network. */
export function inputFromSnapshot(snap: AgentSnapshot, req: Pick<CreateSandboxInput, 'timeoutMs' | 'labels' | 'env' | 'network'>): CreateSandboxInput {
  return {
    template: snap.template,
    memoryMiB: snap.memoryMiB,
    cpus: snap.cpus,
    pidsMax: snap.pidsMax,
    // A snapshot taken before quotas leaves it the template's or the server's.
    ...(snap.diskMiB > 0 ? { diskMiB: snap.diskMiB } : {}),
    env: { ...snap.env, ...req.env },
    timeoutMs: req.timeoutMs,
    labels: req.labels,
    ...(req.network !== undefined ? { network: req.network } : {}),
  }
}

/** Registers the routes. */
export function snapshotRoutes(app: Hono<ServerEnv>, deps: SnapshotRoutesDeps): void {
  const { sandboxes, logger, answer } = deps
  const service = (): SnapshotService => {
    if (!deps.snapshots) throw new SandstormError('failed_precondition', "this server's agent cannot take snapshots: expected an agent with a layer store")
    return deps.snapshots
  }

  /** A running sandbox, or the error E2B's SDK reports well: 404 for none, 409 for a paused one. */
  const running = (id: string, what: string) => {
    const record = sandboxes.requireStarted(id)
    if (record.state === 'paused') throw new SandstormError('failed_precondition', `sandbox "${id}" is paused: resume it (Sandbox.connect) before ${what}`)
    const pausesAtTimeout = record.lifecycle?.onTimeout === 'pause'
    if (record.state !== 'running' || (record.expiresAtMs <= Date.now() && !pausesAtTimeout)) throw new SandstormError('not_found', `sandbox "${id}" not found (it is no longer running)`)
    return record
  }

  const snapshotInfo = (s: { id: string; label: string }) => ({ snapshotID: s.id, names: s.label ? [s.label] : [] })

  app.post('/sandboxes/:id/snapshots', async (c) => {
    const id = c.req.param('id')
    const body = parseInput(snapshotBody, await jsonOf(c))
    running(id, 'snapshotting it')
    // A create names a template or a snapshot alike (E2B's templateID): a template's name is the template's.
    if (body.name !== undefined && (await deps.agent.templates({ signal: c.var.signal })).some((t) => t.name === body.name)) {
      throw new SandstormError('already_exists', `name "${body.name}": expected a snapshot name that is not a template's; "${body.name}" is a template`)
    }
    const taken = await service().take(id, body.name, { signal: c.var.signal })
    logger.info({ sandboxId: id, snapshotId: taken.id }, 'snapshot taken')
    return c.json(snapshotInfo(taken), 201)
  })

  app.get('/snapshots', (c) => {
    const query = parseInput(listQuery, c.req.query())
    const all = (deps.snapshots?.list() ?? [])
      .filter((s) => (query.sandboxID === undefined || s.sandboxId === query.sandboxID) && (query.name === undefined || s.id === query.name || s.label === query.name))
      // Newest first, as E2B lists them.
      .reverse()
    const offset = query.nextToken ? Number.parseInt(Buffer.from(query.nextToken, 'base64url').toString('utf8'), 10) : 0
    if (!Number.isInteger(offset) || offset < 0) throw new SandstormError('invalid_argument', `nextToken: expected a token from X-Next-Token, got ${JSON.stringify(query.nextToken)}`)
    const limit = query.limit ?? 100
    if (offset + limit < all.length) c.header('X-Next-Token', Buffer.from(String(offset + limit)).toString('base64url'))
    return c.json(all.slice(offset, offset + limit).map(snapshotInfo))
  })

  // E2B's snapshots are templates: deleteSnapshot deletes "the template" by the snapshot's id.
  app.delete('/templates/:id', async (c) => {
    const id = c.req.param('id')
    const snap = deps.snapshots?.source(id)
    if (!snap) throw new SandstormError('not_found', `snapshot "${id}" not found (templates are not deleted through the E2B API)`)
    // Gone for every caller now; its layer goes once no sandbox or snapshot stands on it.
    await service().retire(snap.id, { signal: c.var.signal })
    return c.body(null, 204)
  })

  app.post('/sandboxes/:id/fork', async (c) => {
    const id = c.req.param('id')
    const body = parseInput(forkRequest, await jsonOf(c))
    const parent = running(id, 'forking it')
    const snapshots = service()
    const snap = snapshots.source((await snapshots.take(id, `fork of ${id}`, { signal: c.var.signal })).id)!
    const timeoutMs = (body.timeout ?? deps.defaultTimeoutS) * 1000
    const lifecycle: SandboxLifecycle | undefined = parent.lifecycle && { ...parent.lifecycle, timeoutMs }
    const input = inputFromSnapshot(snap, { timeoutMs, labels: parent.labels, network: parent.network })
    // Each fork starts or fails on its own, as E2B reports them (allSettled).
    const forks = await Promise.allSettled(
      Array.from({ length: body.count ?? 1 }, async () => {
        const info = await sandboxes.create(input, { signal: c.var.signal }, { snapshotId: snap.id })
        if (lifecycle) sandboxes.setLifecycle(info.id, lifecycle)
        return info
      }),
    )
    // The fork's snapshot is no snapshot of the user's: it goes once the parent and the forks are gone.
    await snapshots.retire(snap.id).catch((err: unknown) => logger.warn({ snapshotId: snap.id, err }, 'could not retire the snapshot of a fork'))
    const started = forks.filter((f) => f.status === 'fulfilled').length
    logger.info({ sandboxId: id, snapshotId: snap.id, count: forks.length, started }, 'sandbox forked')
    return c.json(
      forks.map((f) => (f.status === 'fulfilled' ? { sandbox: answer(f.value) } : { error: restErrorBody(f.reason, logger) })),
      201,
    )
  })
}
