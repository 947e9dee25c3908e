/** The AgentApi of a fleet: each call goes to the agent that holds the sandbox; a create is placed by the scheduler. */
import type { AgentApi, AgentGoldenApi, AgentSandbox, AgentSnapshot, AgentSnapshotApi } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { CallOptions, Logger, TemplateInfo } from '../../shared/index.js'
import type { SandboxCatalog } from '../catalog.js'
import type { CatalogDb } from '../db.js'
import type { AgentRegistry } from './agent-registry.js'
import { askEach, defaultAnswerTimeoutMs } from './fan-out.js'
import type { LiveAgent } from './fan-out.js'
import { mergeTemplates } from './fleet-templates.js'
import { constraintsOf, pickAgent } from './scheduler.js'
import type { SchedulerOptions } from './scheduler.js'

/** Options of createFleetRouter. */
export interface FleetRouterOptions {
  registry: AgentRegistry
  db: CatalogDb
  /** The sandboxes, with where each is placed. */
  catalog: SandboxCatalog
  logger: Logger
  scheduler?: SchedulerOptions
  /** How long a call made of every agent (list, templates, usage samples) waits for each one's answer. @default 30_000 */
  answerTimeoutMs?: number
}

/** Routes every AgentApi call to the right agent of the fleet. */
export function createFleetRouter(options: FleetRouterOptions): AgentApi {
  const { registry, db, catalog, logger } = options
  const answerTimeoutMs = options.answerTimeoutMs ?? defaultAnswerTimeoutMs
  const placement = catalog.placement
  const snapshotRecords = db.prepare<[], { record: string }>('SELECT record FROM snapshots')
  const snapshotKnown = db.prepare<[string], { id: string }>('SELECT id FROM snapshots WHERE id = ?')
  const holderRow = db.prepare<[string], { agent_id: string }>('SELECT agent_id FROM snapshot_agents WHERE snapshot_id = ?')
  const recordHolder = db.prepare('INSERT OR REPLACE INTO snapshot_agents (snapshot_id, agent_id) VALUES (?, ?)')
  const dropHolder = db.prepare('DELETE FROM snapshot_agents WHERE snapshot_id = ?')

  const agentIdOf = (sandboxId: string): string => {
    const agentId = placement.agentOf(sandboxId)
    if (!agentId) throw new SandstormError('not_found', `sandbox "${sandboxId}" not found`)
    return agentId
  }
  /** The sandboxes the catalog places on an agent, running or paused as it last knew them (one query, not one per sandbox). */
  const lastKnownOn = (agentId: string): AgentSandbox[] =>
    placement.on(agentId).flatMap(({ id, state, template, runtime }) => (state === 'running' || state === 'paused' ? [{ id, template, runtime, status: state }] : []))
  const at = (sandboxId: string): AgentApi => registry.live(agentIdOf(sandboxId), `sandbox "${sandboxId}"`)
  const liveEntries = (): LiveAgent[] => registry.list().flatMap((e) => (e.state === 'live' && e.api ? [{ id: e.id, api: e.api }] : []))
  /** Each live agent's templates; one that fails, is late or answers out of the contract has none. */
  const templatesOfEach = async (o: CallOptions | undefined) =>
    (await askEach(liveEntries(), (a, call) => a.api.templates(call), { what: 'templates', timeoutMs: answerTimeoutMs, logger }, o)).map(({ agent, answer }) => ({ agent, templates: answer ?? [] }))
  /**
   * The agent that holds a snapshot: the one that took it, as recorded then. A snapshot from
   * before the record (or from a server that lost it) is looked for on every live agent, and
   * taken as found only where exactly one has it: any agent can say yes to any id, and the one
   * that answered first used to get the fork, with the snapshot's env.
   */
  const holderOf = async (snapshotId: string): Promise<{ id: string; api: AgentApi }> => {
    const recorded = holderRow.get(snapshotId)?.agent_id
    if (recorded) return { id: recorded, api: registry.live(recorded, `snapshot "${snapshotId}"`) }
    const found = (await Promise.all(liveEntries().map(async (e) => ((await e.api.snapshots?.get(snapshotId).then(() => true, () => false)) ? e : null)))).filter((e) => e !== null)
    if (found.length === 0) throw new SandstormError('unavailable', `snapshot "${snapshotId}" is on no live agent`)
    if (found.length > 1) throw new SandstormError('failed_precondition', `snapshot "${snapshotId}" is claimed by ${found.length} agents (${found.map((e) => e.id).join(', ')}): expected one; the server has no record of which took it`)
    recordHolder.run(snapshotId, found[0]!.id)
    return found[0]!
  }

  const snapshots: AgentSnapshotApi = {
    async take(sandboxId, req, o) {
      const agentId = agentIdOf(sandboxId)
      const snapshot = await need(registry.live(agentId, `sandbox "${sandboxId}"`)).take(sandboxId, req, o)
      // A new snapshot has a new id: one the server knows already is an agent's claim on another's.
      if (snapshotKnown.get(snapshot.id) || holderRow.get(snapshot.id)) {
        throw new SandstormError('internal', `agent "${agentId}" answered a snapshot with an id the server knows already ("${snapshot.id}"); refused`)
      }
      recordHolder.run(snapshot.id, agentId)
      return snapshot
    },
    get: async (id, o) => need((await holderOf(id)).api).get(id, o),
    // What the server already knows stays listed while its agent is away; live agents add theirs,
    // each only its own (never one recorded as another agent's).
    async list(o) {
      const known = new Map(snapshotRecords.all().map((r) => [JSON.parse(r.record).id as string, JSON.parse(r.record) as AgentSnapshot]))
      for (const { id, api } of liveEntries()) {
        for (const s of (await api.snapshots?.list(o)) ?? []) {
          const holder = holderRow.get(s.id)?.agent_id
          if (holder === undefined || holder === id) known.set(s.id, s)
        }
      }
      return [...known.values()]
    },
    async remove(id, o) {
      await need((await holderOf(id)).api).remove(id, o)
      dropHolder.run(id)
    },
  }

  const golden: AgentGoldenApi = {
    // A golden version stands on the snapshot's layers, so it is made (and asked about) where the snapshot is.
    promote: async (name, snapshotId, o, settings) => needGolden((await holderOf(snapshotId)).api).promote(name, snapshotId, o, settings),
    standingOn: async (snapshotId, o) => needGolden((await holderOf(snapshotId)).api).standingOn(snapshotId, o),
    // Rolled back where the current version is golden (where it was promoted), else wherever the template is.
    async rollback(name, o) {
      const holders = (await templatesOfEach(o)).flatMap(({ agent, templates }) => {
        const current = templates.find((t) => t.name === name)
        return current ? [{ api: agent.api, current }] : []
      })
      if (holders.length === 0) throw new SandstormError('not_found', `template "${name}" is on no live agent`)
      const promoted = holders.filter((h) => h.current.snapshotId !== undefined)
      const results = await Promise.allSettled((promoted.length > 0 ? promoted : holders).map((h) => needGolden(h.api).rollback(name, o)))
      const done = results.find((r): r is PromiseFulfilledResult<TemplateInfo> => r.status === 'fulfilled')
      if (done) return done.value
      throw (results[0] as PromiseRejectedResult).reason
    },
  }

  return {
    info() {
      const live = registry.list().filter((e) => e.state === 'live')
      return {
        id: 'fleet',
        hostname: 'fleet',
        runtimes: [...new Set(live.flatMap((e) => e.info.runtimes))],
        cpus: live.reduce((n, e) => n + e.info.cpus, 0),
        memoryMiB: live.reduce((n, e) => n + e.info.memoryMiB, 0),
      }
    },
    async templates(o) {
      const answers = (await templatesOfEach(o)).map(({ agent, templates }) => ({ agentId: agent.id, templates }))
      return mergeTemplates(answers, (snapshotId) => holderRow.get(snapshotId)?.agent_id)
    },
    async create(req, o) {
      let api: AgentApi
      let agentId: string
      if (req.snapshotId) {
        ;({ id: agentId, api } = await holderOf(req.snapshotId))
      } else {
        const labels = catalog.get(req.id)?.labels ?? {}
        // The row being created has no agent yet, so it is not counted twice.
        const entry = pickAgent(registry.list(), placement.loads(), { template: req.template, memoryMiB: req.memoryMiB, cpus: req.cpus, constraints: constraintsOf(labels), ...(req.runtime ? { runtime: req.runtime } : {}) }, options.scheduler)
        api = entry.api!
        agentId = entry.id
      }
      placement.place(req.id, agentId)
      try {
        return await api.create(req, o)
      } catch (err) {
        // A pooled sandbox that did not start is no pool's: what its agent still has of it is an orphan.
        placement.release(req.id)
        throw err
      }
    },
    async destroy(id, o) {
      try {
        await at(id).destroy(id, o)
      } finally {
        // A pooled sandbox is destroyed once: should the agent still hold it, it is an orphan its next registration destroys.
        placement.release(id)
      }
    },
    // Each agent's own sandboxes only: an agent that lists one the catalog places on another could
    // have it marked stopped, or a pool's sandbox destroyed as broken. An agent that fails to
    // answer (or answers late) does not fail the others' answers: its sandboxes are listed as the
    // catalog last knew them, since one left out would read as gone, and the state and pool checks
    // of every other agent's sandboxes go on.
    async list(o) {
      const answers = await askEach(liveEntries(), (a, call) => a.api.list(call), { what: 'list (its sandboxes are taken as the catalog last knew them)', timeoutMs: answerTimeoutMs, logger }, o)
      return answers.flatMap(({ agent, answer }) => (answer ? registry.mayReportOn(agent.id, answer) : lastKnownOn(agent.id)))
    },
    pause: (id, o) => at(id).pause(id, o),
    stats: (id, o) => at(id).stats(id, o),
    async statsMany(ids, o) {
      // One call per agent, for the sandboxes it holds; an agent that is away, fails or is late
      // measures none, and of an answer only the sandboxes that agent was asked about are kept.
      const byAgent = new Map<string, string[]>()
      for (const id of ids) {
        const agentId = placement.agentOf(id)
        if (agentId) byAgent.set(agentId, [...(byAgent.get(agentId) ?? []), id])
      }
      const asked = liveEntries().filter((a) => byAgent.has(a.id))
      const answers = await askEach(asked, (a, call) => a.api.statsMany(byAgent.get(a.id)!, call), { what: 'usage samples', timeoutMs: answerTimeoutMs, logger }, o)
      const stats: Awaited<ReturnType<AgentApi['statsMany']>> = {}
      for (const { agent, answer } of answers) for (const id of byAgent.get(agent.id)!) if (answer && Object.hasOwn(answer, id)) stats[id] = answer[id]!
      return stats
    },
    resume: (id, o) => at(id).resume(id, o),
    exec: (id, req, o) => at(id).exec(id, req, o),
    // Generators, so that a lost agent fails on the first read as every other stream error does.
    async *follow(id, pid, o) {
      yield* at(id).follow(id, pid, o)
    },
    wait: (id, pid, o) => at(id).wait(id, pid, o),
    processes: (id, o) => at(id).processes(id, o),
    signal: (id, pid, signal, o) => at(id).signal(id, pid, signal, o),
    resizePty: (id, pid, size, o) => at(id).resizePty(id, pid, size, o),
    writeStdin: (id, pid, data, close, o) => at(id).writeStdin(id, pid, data, close, o),
    async *readFile(id, path, o) {
      yield* at(id).readFile(id, path, o)
    },
    writeFile: (id, path, data, o) => at(id).writeFile(id, path, data, o),
    listDir: (id, path, o) => at(id).listDir(id, path, o),
    stat: (id, path, o) => at(id).stat(id, path, o),
    mkdir: (id, path, parents, o) => at(id).mkdir(id, path, parents, o),
    remove: (id, path, recursive, o) => at(id).remove(id, path, recursive, o),
    rename: (id, from, to, o) => at(id).rename(id, from, to, o),
    updateNetwork: (id, egress, o) => at(id).updateNetwork(id, egress, o),
    connect: (id, port, o) => at(id).connect(id, port, o),
    close: async () => undefined,
    snapshots,
    golden,
  }
}

function need(api: AgentApi): AgentSnapshotApi {
  if (!api.snapshots) throw new SandstormError('failed_precondition', 'this agent cannot take snapshots')
  return api.snapshots
}

function needGolden(api: AgentApi): AgentGoldenApi {
  if (!api.golden) throw new SandstormError('failed_precondition', 'this agent cannot promote snapshots: expected an agent with a layer store')
  return api.golden
}
