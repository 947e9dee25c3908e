/**
 * Removing an agent from the fleet (`sandstorm agents rm`): its certificate is revoked, the server
 * refuses it from then on and logs it, and only a join token lets the host in again. A
 * `sandstorm server` and a `sandstorm agent` as processes on 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { execa, type ResultPromise } from 'execa'
import { createLocalAgent } from '../src/agent/index.js'
import { listAgents, Sandbox } from '@sandstorm/sdk'
import { silentLogger } from '../src/shared/index.js'
import { startAgentProcess, startServerProcess, type ServerProcess } from './helpers/fleet-processes.js'
import { skipReason, templatesDir } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false
const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))


describe('fleet: an agent removed with `sandstorm agents rm`', { skip, timeout: 180_000 }, () => {
  let dir: string
  let server: ServerProcess
  let serverLog = ''
  let agent: ResultPromise | undefined
  const agentDir = (): string => join(dir, 'agent')
  const conn = (): { apiUrl: string; apiKey: string } => ({ apiUrl: server.url, apiKey: server.apiKey })
  const cli = async (...args: string[]): Promise<{ code: number | undefined; stdout: string; stderr: string }> => {
    const r = await execa('node', [main, '--url', server.url, '--api-key', server.apiKey, ...args], { reject: false })
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr }
  }
  const liveAgent = async (): Promise<string> =>
    until('a live agent', async () => (await listAgents(conn())).find((a) => a.state === 'live' && a.metrics)?.id)

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-fleet-revoke-'))
    server = await startServerProcess({ dataDir: join(dir, 'server'), agentHost: '127.0.0.1' })
    server.child.stderr?.on('data', (chunk: Buffer) => (serverLog += chunk.toString()))
    agent = startAgentProcess({ server: server.agentAddress, token: server.token, dataDir: agentDir() })
  })

  after(async () => {
    agent?.kill('SIGTERM')
    await agent
    server?.child.kill('SIGTERM')
    await server?.child
    // Whatever the catalog forgot and no server destroyed is still on the host: remove it here.
    if (dir) {
      const local = await createLocalAgent({ dataDir: agentDir(), templatesDir, logger: silentLogger() })
      for (const s of await local.list()) await local.destroy(s.id).catch(() => undefined)
      await local.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  let removedId: string

  it('refuses to remove an agent that holds sandboxes unless forced, then revokes it: the agent stops', async () => {
    const id = await liveAgent()
    removedId = id
    await Sandbox.create('debian', conn())
    await until('the heartbeat counting the sandbox', async () => (await listAgents(conn()))[0]?.metrics?.sandboxes === 1)

    const refused = await cli('agents', 'rm', id)
    assert.notEqual(refused.code, 0)
    assert.match(refused.stderr, /holds 1 sandbox/)
    assert.equal((await listAgents(conn())).length, 1)

    const removed = await cli('agents', 'rm', id, '--force')
    assert.equal(removed.code, 0, removed.stderr)
    assert.match(removed.stdout, new RegExp(`agent ${id} removed`))
    assert.deepEqual(await listAgents(conn()), [])
    // The catalog forgot the sandbox that was placed there.
    assert.deepEqual((await Sandbox.list(conn())).map((s) => s.id), [])

    // The link was cut; the agent's next connection is refused for good, and it stops.
    const stopped = await agent!
    agent = undefined
    assert.notEqual(stopped.exitCode, 0)
    assert.match(String(stopped.stderr), /revoked/)
    assert.match(serverLog, new RegExp(`refused an agent[^\\n]*${id}[^\\n]*revoked|${id}[^\\n]*revoked[^\\n]*refused an agent`))
  })

  it('refuses the revoked certificate on a restart without a token', async () => {
    const again = await startAgentProcess({ server: server.agentAddress, dataDir: agentDir() })
    assert.notEqual(again.exitCode, 0)
    assert.match(String(again.stderr), /revoked[\s\S]*--token|--token[\s\S]*revoked/)
    assert.deepEqual(await listAgents(conn()), [])
  })

  it('lets the host join again with the token, as a new agent, and destroys the sandbox the catalog forgot', async () => {
    agent = startAgentProcess({ server: server.agentAddress, token: server.token, dataDir: agentDir() })
    const id = await liveAgent()
    const list = await listAgents(conn())
    assert.equal(list.length, 1)
    assert.equal(list[0]!.id, id)
    assert.notEqual(id, removedId)
    await until('the orphan destroyed', async () => (await listAgents(conn()))[0]?.metrics?.sandboxes === 0)
    const sb = await Sandbox.create('debian', conn())
    assert.equal((await sb.commands.run(['echo', 'back'], conn())).stdout, 'back\n')
    await sb.kill(conn())
  })
})
