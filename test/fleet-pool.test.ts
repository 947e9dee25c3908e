/**
 * Warm pools in a fleet: a `sandstorm server` and one `sandstorm agent` as processes on 127.0.0.1.
 * A sandbox handed over from the pool is held by the agent that started it, and is in every way
 * like one created cold there: its commands run and stream, are logged from the agent's events,
 * it is listed, measured, counted on its agent and killed there.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ResultPromise } from 'execa'
import { deletePool, listAgents, listCommandLogs, Sandbox, setPool, waitForPool } from '@sandstorm/sdk'
import { startAgentProcess, startServerProcess, type ServerProcess, stopFleetProcesses } from './helpers/fleet-processes.js'
import { sandboxIdsOnDisk } from './helpers/leftovers.js'
import { skipReason } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

describe('fleet: a warm pool on a remote agent', { skip, timeout: 300_000 }, () => {
  let dir: string
  let server: ServerProcess
  let agent: ResultPromise
  const agentDir = (): string => join(dir, 'agent')
  const conn = (): { apiUrl: string; apiKey: string } => ({ apiUrl: server.url, apiKey: server.apiKey })

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-fleet-pool-'))
    server = await startServerProcess({ dataDir: join(dir, 'server'), agentHost: '127.0.0.1' })
    agent = startAgentProcess({ server: server.agentAddress, token: server.token, dataDir: agentDir() })
    await until('a live agent', async () => (await listAgents(conn())).some((a) => a.state === 'live' && a.metrics), 60_000)
  })

  after(async () => {
    // A stopped agent leaves its sandboxes for adoption: what a failed test left goes first.
    if (server) {
      await deletePool('debian', conn()).catch(() => undefined)
      for (const s of await Sandbox.list(conn()).catch(() => [])) await Sandbox.kill(s.id, conn()).catch(() => undefined)
    }
    await stopFleetProcesses(agent, server, dir)
  })

  it('hands over a pooled sandbox that runs, streams, logs, lists, measures and dies on its agent', async () => {
    await setPool('debian', { ...conn(), min: 1, max: 1 })
    await waitForPool('debian', { ...conn(), ready: 1, waitMs: 120_000 })
    const sb = await Sandbox.create('debian', { ...conn(), timeoutMs: 10 * 60_000 })
    assert.equal(sb.start.source, 'pool')

    // Streamed output: the exec's events come back from the agent that holds it.
    const chunks: string[] = []
    const result = await sb.commands.run('echo handed; echo over', { ...conn(), onStdout: (d) => void chunks.push(d) })
    assert.equal(result.exitCode, 0, result.stderr)
    assert.equal(result.stdout, 'handed\nover\n')
    assert.equal(chunks.join(''), 'handed\nover\n')

    // The central log holds it only if the server took the agent's command events for this sandbox.
    const logs = await until('the command in the central log', async () => {
      const l = await listCommandLogs({ ...conn(), sandboxId: sb.sandboxId })
      return l.length > 0 && l
    })
    assert.deepEqual(logs.at(-1)?.argv, ['/bin/sh', '-c', 'echo handed; echo over'])
    assert.equal(logs.at(-1)?.exitCode, 0)

    const listed = await Sandbox.list(conn())
    assert.deepEqual(listed.filter((s) => s.id === sb.sandboxId).map((s) => s.state), ['running'])
    assert.ok((await sb.getUsage(conn())).memoryUsedBytes > 0)
    // The server's own samples ask each agent for the sandboxes it places there.
    await until('a usage sample in the series', async () => (await sb.getMetrics(conn())).length > 0, 60_000)

    assert.equal(await Sandbox.kill(sb.sandboxId, conn()), true)
    assert.ok(!(await sandboxIdsOnDisk(agentDir())).includes(sb.sandboxId), 'the handed-over sandbox is still on its agent')
    assert.deepEqual((await Sandbox.list(conn())).filter((s) => s.id === sb.sandboxId), [])
  })

  it('destroys the pooled sandboxes on the agent when the pool is deleted', async () => {
    await waitForPool('debian', { ...conn(), ready: 1, waitMs: 120_000 })
    const before = await sandboxIdsOnDisk(agentDir())
    assert.equal(before.length, 1, `expected the pooled sandbox alone on the agent, found ${before.join(', ')}`)
    await deletePool('debian', conn())
    assert.deepEqual(await sandboxIdsOnDisk(agentDir()), [])
    assert.ok(existsSync(agentDir()))
  })
})
