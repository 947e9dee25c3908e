/**
 * The fleet's list of sandboxes: what each agent answers, kept only where the catalog places it
 * there (or knows it no more), and for an agent that fails to answer what the catalog last knew;
 * in a fixed number of queries however many sandboxes there are (it asked once per sandbox).
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { AgentSandbox } from '../../agent/index.js'
import type { ServerMessage } from '../../proto/index.js'
import { silentLogger } from '../../shared/index.js'
import { createSandboxCatalog, type SandboxCatalog } from '../catalog.js'
import { openDatabase, type CatalogDb } from '../db.js'
import { createAgentConnection } from './agent-connection.js'
import { createAgentRegistry, type AgentRegistry } from './agent-registry.js'
import { createFleetRouter } from './router.js'

/** A database whose statements count their runs. */
function counting(db: CatalogDb): { db: CatalogDb; runs: () => number } {
  let runs = 0
  const run = new Set(['get', 'all', 'run', 'iterate'])
  const proxy = new Proxy(db, {
    get(target, key) {
      if (key !== 'prepare') {
        const value: unknown = Reflect.get(target, key)
        return typeof value === 'function' ? value.bind(target) : value
      }
      return (sql: string) =>
        new Proxy(target.prepare(sql), {
          get(statement, name) {
            const value: unknown = Reflect.get(statement, name)
            if (typeof value !== 'function') return value
            return (...args: unknown[]) => {
              if (run.has(String(name))) runs++
              return (value as (...a: unknown[]) => unknown).apply(statement, args)
            }
          },
        })
    },
  })
  return { db: proxy, runs: () => runs }
}

const n = 100
const ids = (agent: string): string[] => Array.from({ length: n }, (_, i) => `sb-${agent}${String(i).padStart(14, '0')}`)

describe("the fleet's list of sandboxes", () => {
  let dir: string
  let raw: CatalogDb
  let db: ReturnType<typeof counting>
  let catalog: SandboxCatalog
  let registry: AgentRegistry
  const onA: AgentSandbox[] = ids('aa').map((id) => ({ id, template: 'debian', runtime: 'runc', status: 'running' }))
  const onB: AgentSandbox[] = ids('bb').map((id, i) => ({ id, template: 'host', runtime: i % 2 ? 'qemu' : 'runc', status: i % 3 ? 'running' : 'paused' }))

  /** An agent whose `list` answers `answer` (an Error: fails), over an in-memory connection. */
  const attach = (agentId: string, held: AgentSandbox[], answer: AgentSandbox[] | Error): void => {
    const conn = createAgentConnection(agentId, (msg: ServerMessage) => {
      const req = msg.request
      if (!req) return
      const reply = req.kind !== 'list' ? { requestId: req.requestId, resultJson: 'null' }
        : answer instanceof Error ? { requestId: req.requestId, resultJson: '', error: { code: 'internal', message: answer.message } }
        : { requestId: req.requestId, resultJson: JSON.stringify(answer) }
      queueMicrotask(() => conn.onReply(reply))
    })
    registry.admit(agentId, agentId)
    registry.attach(conn, { info: { id: agentId, hostname: agentId, runtimes: ['runc', 'qemu'], cpus: 8, memoryMiB: 8192 }, labels: {}, templates: ['debian', 'host'], sandboxes: held })
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-router-list-'))
    raw = openDatabase(dir)
    db = counting(raw)
    catalog = createSandboxCatalog(db.db)
    registry = createAgentRegistry({ db: db.db, catalog, logger: silentLogger() })
    const now = Date.now()
    for (const [agentId, sandboxes] of [['ag-a', onA], ['ag-b', onB]] as const) {
      for (const s of sandboxes) {
        catalog.insert({ id: s.id, template: s.template, runtime: s.runtime, state: s.status, memoryMiB: 256, cpus: 1, pidsMax: 256, diskMiB: 1024, labels: {}, env: {}, network: 'none', createdAtMs: now, expiresAtMs: now + 60_000 })
        catalog.placement.place(s.id, agentId)
      }
    }
    // Still starting on ag-b: not listed as running or paused.
    catalog.insert({ id: 'sb-bbstarting0000000', template: 'host', runtime: 'runc', state: 'starting', memoryMiB: 256, cpus: 1, pidsMax: 256, diskMiB: 1024, labels: {}, env: {}, network: 'none', createdAtMs: now, expiresAtMs: now + 60_000 })
    catalog.placement.place('sb-bbstarting0000000', 'ag-b')
    // ag-a answers its own, one of ag-b's (not its to list) and an orphan the catalog does not know; ag-b fails.
    const orphan: AgentSandbox = { id: 'sb-orphan0000000000', template: 'debian', runtime: 'runc', status: 'running' }
    attach('ag-a', onA, [...onA, onB[0]!, orphan])
    attach('ag-b', onB, new Error('list failed'))
  })
  after(async () => {
    registry.close()
    raw.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps what each agent may report, takes the catalog for one that fails, in a fixed number of queries', async () => {
    const router = createFleetRouter({ registry, db: db.db, catalog, logger: silentLogger() })
    const before = db.runs()
    const listed = await router.list()
    const queries = db.runs() - before
    const byId = (a: AgentSandbox, b: AgentSandbox) => a.id.localeCompare(b.id)
    const orphan: AgentSandbox = { id: 'sb-orphan0000000000', template: 'debian', runtime: 'runc', status: 'running' }
    assert.deepEqual([...listed].sort(byId), [...onA, orphan, ...onB].sort(byId))
    assert.ok(queries <= 2, `${queries} queries to list ${2 * n} sandboxes`)
  })
})
