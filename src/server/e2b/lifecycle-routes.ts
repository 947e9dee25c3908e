/** E2B's lifecycle REST API (header `X-API-KEY`): create, connect, info, list, kill, timeout, pause, metrics. */
import type { Context, Hono } from 'hono'
import { z } from 'zod'
import type { AgentApi } from '../../agent/index.js'
import { limits, SandstormError } from '../../shared/index.js'
import type { Logger, SandboxInfo } from '../../shared/index.js'
import type { SandboxCatalog } from '../catalog.js'
import type { IngressInfo, ServerEnv } from '../context.js'
import type { SandboxService } from '../sandbox-service.js'
import { parseInput } from '../validation.js'
import { jsonOf } from '../request-input.js'
import type { AccessTokens } from '../access-tokens.js'
import type { ProcessRegistry } from './process-registry.js'
import type { UsageHistory } from '../usage-history.js'
import { listAnswer } from './list-answer.js'
import { metricsAnswer } from './metrics-answer.js'
import type { SnapshotService } from '../snapshot-service.js'
import { inputFromSnapshot } from './snapshot-routes.js'

/** What the routes need. */
export interface LifecycleRoutesDeps {
  agent: AgentApi
  sandboxes: SandboxService
  /** Pause and resume change the state that the catalog reports; the service has no verbs for them. */
  catalog: SandboxCatalog
  tokens: AccessTokens
  registry: ProcessRegistry
  /** Every sandbox's usage samples (getMetrics). */
  usageHistory: UsageHistory
  logger: Logger
  /** The domain of sandbox hosts and a private sandbox's traffic token. */
  ingressOf(info: SandboxInfo): IngressInfo
  /** Snapshots, when the agent takes them: a create may name one as its template. */
  snapshots?: SnapshotService
}

/**
 * The envd version this server speaks, which turns on every feature that SDK 2.51 gates on a
 * version, each served here: the default user (0.4.0), closeStdin (0.5.2), octet-stream uploads
 * (0.5.7), file metadata (0.6.2), entries in watch events (0.6.3), watching with network mounts
 * allowed (0.6.4).
 */
export const envdVersion = '0.6.4'

/** E2B's template names that map onto Sandstorm's (the code interpreter SDK asks for `code-interpreter-v1` itself). */
const templateAliases: Record<string, string> = { 'code-interpreter': 'code-interpreter-v1' }

/** E2B's default sandbox lifetime. */
export const defaultTimeoutS = 300

const maxTimeoutS = Math.floor(limits.maxTimeoutMs / 1000)

/** E2B's `network` of a create: what Sandstorm serves of it, and what it refuses by name. */
const networkBody = z.looseObject({
  allowOut: z.array(z.string()).nullish(),
  denyOut: z.array(z.string()).nullish(),
  allowPublicTraffic: z.boolean().nullish(),
  maskRequestHost: z.string().nullish(),
})
const unsupportedNetwork = {
  rules: 'per-host request rules (transforms) are not supported',
  egressProxy: 'an egress proxy is not supported',
  httpsPorts: 'HTTPS ports are not supported: ingress is plain HTTP through the server',
} as const

const createBody = z.looseObject({
  templateID: z.string().min(1, 'a template such as "base"'),
  timeout: z.number().int().positive().max(maxTimeoutS).optional(),
  metadata: z.record(z.string(), z.string()).nullish(),
  envVars: z.record(z.string(), z.string()).nullish(),
  autoPause: z.boolean().nullish(),
  // Memory is kept across every pause (runc freezes, qemu stops the machine), so false keeps more than asked.
  autoPauseMemory: z.boolean().nullish(),
  autoResume: z.looseObject({ enabled: z.boolean() }).nullish(),
  allow_internet_access: z.boolean().nullish(),
  network: networkBody.nullish(),
})
const networkUpdate = z.looseObject({
  allowOut: z.array(z.string()).nullish(),
  denyOut: z.array(z.string()).nullish(),
  allow_internet_access: z.boolean().nullish(),
})
const timeoutBody = z.looseObject({ timeout: z.number().int().min(0).max(maxTimeoutS) })
const connectBody = z.looseObject({ timeout: z.number().int().positive().max(maxTimeoutS).optional() })

/** E2B's answer for a started sandbox (create, connect, each fork): its ids, envd token and where its ports are. */
export function sandboxAnswer(info: SandboxInfo, deps: Pick<LifecycleRoutesDeps, 'tokens' | 'ingressOf'>) {
  const ingress = deps.ingressOf(info)
  return {
    templateID: info.template,
    sandboxID: info.id,
    clientID: 'sandstorm',
    envdVersion,
    envdAccessToken: deps.tokens.tokenFor(info.id),
    // getHost(port) builds `<port>-<id>.<domain>` from it: the server's ingress.
    domain: ingress.domain,
    trafficAccessToken: ingress.trafficAccessToken ?? null,
  }
}

/** Registers the routes. */
export function lifecycleRoutes(app: Hono<ServerEnv>, deps: LifecycleRoutesDeps): void {
  const { agent, sandboxes, catalog, registry } = deps

  /** A sandbox past its timeout is gone for E2B at once, even while its destroy is still running. */
  const live = (id: string) => {
    const record = sandboxes.requireStarted(id)
    // One that pauses at its timeout is being paused, not gone.
    const pausing = record.lifecycle?.onTimeout === 'pause'
    if (record.state !== 'paused' && !pausing && record.expiresAtMs <= Date.now()) throw new SandstormError('not_found', `sandbox "${id}" not found (it reached its timeout)`)
    return record
  }

  const created = (info: SandboxInfo) => sandboxAnswer(info, deps)

  const detail = (info: SandboxInfo) => ({
    ...created(info),
    alias: info.template,
    startedAt: info.createdAt,
    endAt: info.expiresAt,
    cpuCount: Math.max(1, Math.round(info.cpus)),
    memoryMB: info.memoryMiB,
    diskSizeMB: info.diskMiB,
    metadata: info.labels,
    state: info.state === 'paused' ? 'paused' : 'running',
    lifecycle: { onTimeout: catalog.get(info.id)?.lifecycle?.onTimeout ?? 'kill', autoResume: catalog.get(info.id)?.lifecycle?.autoResume ?? false },
    allowInternetAccess: info.network !== 'none' && !info.network.denyOut.includes('0.0.0.0/0'),
    network:
      info.network === 'none'
        ? { allowOut: [], denyOut: ['0.0.0.0/0'], allowPublicTraffic: false }
        : {
            allowOut: info.network.allowOut,
            denyOut: info.network.denyOut,
            allowPublicTraffic: info.network.allowPublicTraffic,
            ...(info.network.maskRequestHost ? { maskRequestHost: info.network.maskRequestHost } : {}),
          },
  })

  const create = async (c: Context<ServerEnv>) => {
    const body = parseInput(createBody, await jsonOf(c))
    if (body.autoResume?.enabled && !body.autoPause) throw new SandstormError('invalid_argument', 'autoResume.enabled: expected it only with autoPause true (onTimeout "pause"), got true with autoPause false')
    const metadata = body.metadata ?? {}
    const labelKey = /^[A-Za-z0-9_.\-/]{1,63}$/
    for (const [k, v] of Object.entries(metadata)) {
      if (!labelKey.test(k) || v.length > 256) throw new SandstormError('invalid_argument', `metadata "${k}": expected a key of letters, digits, _ . - / (1-63 chars) and a value of at most 256 chars`)
    }
    for (const name of Object.keys(body.envVars ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new SandstormError('invalid_argument', `envVars "${name}": expected an environment variable name`)
    }
    const net = body.network ?? {}
    for (const [field, why] of Object.entries(unsupportedNetwork)) {
      if ((net as Record<string, unknown>)[field] != null) throw new SandstormError('invalid_argument', `network.${field}: ${why}`)
    }
    const egressGiven = net.allowOut != null || net.denyOut != null || body.allow_internet_access != null
    const network = {
      ...(egressGiven ? { allowOut: net.allowOut ?? [], denyOut: net.denyOut ?? [] } : {}),
      ...(body.allow_internet_access != null ? { allowInternetAccess: body.allow_internet_access } : {}),
      ...(net.allowPublicTraffic != null ? { allowPublicTraffic: net.allowPublicTraffic } : {}),
      ...(net.maskRequestHost != null ? { maskRequestHost: net.maskRequestHost } : {}),
    }
    const timeoutMs = (body.timeout ?? defaultTimeoutS) * 1000
    // A snapshot's id (or name) is a template to E2B.
    let snap = templateAliases[body.templateID] ? undefined : deps.snapshots?.source(body.templateID)
    // A template's name is the template's, whatever a snapshot was named since (by Sandstorm's API, or before a template took the name).
    if (snap && snap.id !== body.templateID && (await deps.agent.templates({ signal: c.var.signal })).some((t) => t.name === body.templateID)) snap = undefined
    if (!snap && /^snap-[a-z0-9]{16}$/.test(body.templateID)) throw new SandstormError('not_found', `snapshot "${body.templateID}" not found: it was deleted, or never taken`)
    const common = { timeoutMs, labels: metadata, env: body.envVars ?? {}, network }
    const info = snap
      ? await sandboxes.create(inputFromSnapshot(snap, common), { signal: c.var.signal }, { snapshotId: snap.id })
      : await sandboxes.create({ template: templateAliases[body.templateID] ?? body.templateID, ...common }, { signal: c.var.signal })
    if (body.autoPause) sandboxes.setLifecycle(info.id, { onTimeout: 'pause', autoResume: body.autoResume?.enabled ?? false, timeoutMs })
    return c.json(created(info), 201)
  }
  app.post('/sandboxes', create)
  app.post('/v2/sandboxes', create)

  const connect = async (c: Context<ServerEnv>) => {
    const id = c.req.param('id')!
    const body = parseInput(connectBody, await jsonOf(c))
    const record = live(id)
    const timeoutMs = body.timeout !== undefined ? body.timeout * 1000 : undefined
    if (record.state === 'paused') {
      // A resume racing this one (traffic woke it) leaves it running: the later end counts then.
      const resumed = await sandboxes.resume(id, timeoutMs ?? defaultTimeoutS * 1000, { signal: c.var.signal })
      if (resumed) return c.json(created(sandboxes.get(id)), 201)
    }
    // A running sandbox keeps the later of its end and the one asked for.
    if (timeoutMs !== undefined && Date.now() + timeoutMs > record.expiresAtMs) sandboxes.setTimeout(id, timeoutMs)
    return c.json(created(sandboxes.get(id)), 200)
  }
  app.post('/sandboxes/:id/connect', connect)
  app.post('/v2/sandboxes/:id/connect', connect)
  app.post('/sandboxes/:id/resume', connect)

  app.get('/sandboxes/:id', (c) => {
    const id = c.req.param('id')
    live(id)
    return c.json(detail(sandboxes.get(id)))
  })

  const list = (c: Context<ServerEnv>, paged: boolean) => {
    const shown = sandboxes
      .list()
      // E2B knows running and paused sandboxes only: one that died on its own is gone, as there;
      // one past its timeout is gone unless it pauses then (as `live` has it).
      .filter((s) => s.state === 'paused' || (s.state === 'running' && (Date.parse(s.expiresAt) > Date.now() || catalog.get(s.id)?.lifecycle?.onTimeout === 'pause')))
    return listAnswer(c, shown, { paged, detail, templateOf: (name) => templateAliases[name] ?? name })
  }
  app.get('/sandboxes', (c) => list(c, false))
  app.get('/v2/sandboxes', (c) => list(c, true))

  app.delete('/sandboxes/:id', async (c) => {
    const id = c.req.param('id')
    const record = sandboxes.requireStarted(id)
    // A frozen sandbox's processes cannot die until thawed.
    if (record.state === 'paused') await agent.resume(id, { signal: c.var.signal }).catch(() => undefined)
    await sandboxes.destroy(id, { signal: c.var.signal })
    registry.drop(id)
    return c.body(null, 204)
  })

  app.post('/sandboxes/:id/timeout', async (c) => {
    const id = c.req.param('id')
    const body = parseInput(timeoutBody, await jsonOf(c))
    const record = live(id)
    // A paused sandbox stays until resumed; its timeout starts again then.
    if (record.state !== 'paused') sandboxes.setTimeout(id, Math.max(1, body.timeout * 1000))
    return c.body(null, 204)
  })

  app.post('/sandboxes/:id/pause', async (c) => {
    const id = c.req.param('id')
    live(id)
    // Paused sandboxes are kept (as E2B keeps them) for the longest lifetime Sandstorm allows.
    await sandboxes.pause(id, { signal: c.var.signal })
    return c.body(null, 204)
  })

  // Replaces the egress policy whole (E2B's updateNetwork): omitted lists are cleared.
  app.put('/sandboxes/:id/network', async (c) => {
    const id = c.req.param('id')
    const body = parseInput(networkUpdate, await jsonOf(c))
    live(id)
    await sandboxes.updateNetwork(
      id,
      { allowOut: body.allowOut ?? [], denyOut: body.denyOut ?? [], ...(body.allow_internet_access != null ? { allowInternetAccess: body.allow_internet_access } : {}) },
      { signal: c.var.signal },
    )
    return c.body(null, 204)
  })

  app.get('/sandboxes/:id/metrics', (c) => {
    const id = c.req.param('id')
    live(id)
    return metricsAnswer(c, sandboxes.get(id), deps.usageHistory)
  })
}
