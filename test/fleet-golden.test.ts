/**
 * Snapshots and golden templates through remote agents: a `sandstorm server` and two `sandstorm
 * agent`s as processes on 127.0.0.1, each agent with a template dir of its own (so that the
 * versions made here never land in the shared store).
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ResultPromise } from 'execa'
import { ConflictError, deleteSnapshot, getSnapshot, listAgents, listSnapshots, listTemplates, promoteTemplate, rollbackTemplate, Sandbox } from '@sandstorm/sdk'
import { ownTemplatesDir, startAgentProcess, startServerProcess, type ServerProcess } from './helpers/fleet-processes.js'
import { skipReason } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false


describe('fleet: snapshots and golden templates through remote agents', { skip, timeout: 180_000 }, () => {
  let dir: string
  let server: ServerProcess
  const agents: ResultPromise[] = []
  const sandboxes: Sandbox[] = []
  const conn = (): { apiUrl: string; apiKey: string } => ({ apiUrl: server.url, apiKey: server.apiKey })
  const sh = async (sb: Sandbox, cmd: string): Promise<string> => {
    const result = await sb.commands.run(cmd, conn())
    assert.equal(result.exitCode, 0, `${cmd}: ${result.stderr}`)
    return result.stdout
  }
  const create = async (template: string): Promise<Sandbox> => {
    const sb = await Sandbox.create(template, { ...conn(), timeoutMs: 10 * 60_000 })
    sandboxes.push(sb)
    return sb
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-fleet-golden-'))
    server = await startServerProcess({ dataDir: join(dir, 'server'), agentHost: '127.0.0.1' })
    for (let i = 0; i < 2; i++) {
      const templatesDir = await ownTemplatesDir(join(dir, `templates-${i}`))
      agents.push(startAgentProcess({ server: server.agentAddress, token: server.token, dataDir: join(dir, `agent-${i}`), templatesDir }))
    }
    await until('two live agents', async () => (await listAgents(conn())).filter((a) => a.state === 'live' && a.metrics).length === 2, 60_000)
  })

  after(async () => {
    if (server) for (const s of sandboxes) await Sandbox.kill(s.sandboxId, conn()).catch(() => undefined)
    for (const a of agents) a.kill('SIGTERM')
    await Promise.allSettled(agents)
    server?.child.kill('SIGTERM')
    await server?.child
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  let first: string
  let second: string

  it('takes, lists, gets and forks a snapshot on the agent that holds the sandbox', async () => {
    const sb = await create('debian')
    await sh(sb, 'echo one > /marker')
    first = (await sb.snapshot({ ...conn(), label: 'one' })).id
    await sh(sb, 'echo two > /marker')
    second = (await sb.snapshot(conn())).id

    assert.deepEqual((await listSnapshots(conn())).map((s) => s.id).sort(), [first, second].sort())
    assert.equal((await getSnapshot(first, conn())).label, 'one')
    // A fork can only start where the snapshot is: the file proves it went there.
    const [fork] = await Sandbox.fork(first, conn())
    sandboxes.push(fork!)
    assert.equal(await sh(fork!, 'cat /marker'), 'one\n')
  })

  it('promotes snapshots to golden versions on their agent, starts sandboxes from them, and rolls back', async () => {
    const v1 = await promoteTemplate('fleet-golden', first, conn())
    assert.equal(v1.version, 1)
    assert.equal(v1.snapshotId, first)
    const v2 = await promoteTemplate('fleet-golden', second, conn())
    assert.equal(v2.version, 2)
    assert.equal(v2.snapshotId, second)
    assert.equal((await listTemplates(conn())).find((t) => t.name === 'fleet-golden')?.version, 2)
    // Only the holder has the template; the scheduler learns of it from its next heartbeat.
    const holders = await until('an agent listing the golden template', async () => {
      const list = (await listAgents(conn())).filter((a) => a.templates.includes('fleet-golden'))
      return list.length > 0 && list
    })
    assert.equal(holders.length, 1)
    assert.equal(await sh(await create('fleet-golden'), 'cat /marker'), 'two\n')

    const back = await rollbackTemplate('fleet-golden', conn())
    assert.equal(back.version, 1)
    assert.equal(await sh(await create('fleet-golden'), 'cat /marker'), 'one\n')
    await assert.rejects(rollbackTemplate('fleet-golden', conn()), (e: unknown) => e instanceof ConflictError && /expected an older version/.test(e.message))

    // The agent knows what stands on its snapshots: neither can go while a version stands on it.
    await assert.rejects(deleteSnapshot(first, conn()), (e: unknown) => e instanceof ConflictError && /template fleet-golden v1/.test(e.message))
    await assert.rejects(deleteSnapshot(second, conn()), (e: unknown) => e instanceof ConflictError && /template fleet-golden v2/.test(e.message))
  })
})
