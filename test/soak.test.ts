/**
 * Faults survived: execs at concurrency 50 across a server and three agents (separate processes,
 * each agent in its own network namespace) while one agent is SIGKILLed and restarted, and then
 * the server. Every exec succeeds or fails with a typed, retryable error; every sandbox is adopted
 * back; the catalog agrees with what runc runs on each host; and once they are destroyed, nothing
 * of them is left. bench/soak.ts runs the longer one and prints its figures.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { Sandbox } from '@sandstorm/sdk'
import { leftoversOf, loopDevicesUnder } from './helpers/leftovers.js'
import { containersOf, faultPlan, runExecs, startSoakFleet, type SoakFleet } from './helpers/soak.js'
import { skipReason } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? (existsSync('/usr/sbin/ip') || existsSync('/sbin/ip') ? false : 'no ip command (iproute2)')
const agents = 3
const perAgent = 2
const total = 10_000
const concurrency = 50

/** Sandbox namespaces of the agents at these data dirs (`sbn-<tag>-*`, the tag hashed from the data dir). */
async function namespacesOf(dataDirs: string[]): Promise<string[]> {
  const prefixes = dataDirs.map((d) => `sbn-${createHash('sha256').update(d).digest('hex').slice(0, 6)}-`)
  const all = (await execa('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!)
  return all.filter((n) => prefixes.some((p) => n.startsWith(p)))
}

describe('faults: a soak across a server and three agents', { skip, timeout: 900_000 }, () => {
  let fleet: SoakFleet | undefined
  let ids: string[] = []

  before(async () => {
    fleet = await startSoakFleet(agents)
  })

  after(async () => {
    if (fleet) for (const id of ids) await Sandbox.kill(id, fleet.conn()).catch(() => undefined)
    await fleet?.stop()
  })

  it(`runs ${total} execs at concurrency ${concurrency} through an agent's and the server's SIGKILL: each succeeds or fails typed and retryable`, async () => {
    const f = fleet!
    const sandboxes: Sandbox[] = []
    for (let i = 0; i < agents * perAgent; i++) sandboxes.push(await Sandbox.create('debian', { ...f.conn(), timeoutMs: 60 * 60_000 }))
    ids = sandboxes.map((s) => s.sandboxId).sort()
    const faults = faultPlan(f, total, agents)
    const outcome = await runExecs(sandboxes, total, concurrency, faults.onDone)
    await faults.finished
    const failed = Object.values(outcome.retryable).reduce((a, b) => a + b, 0)
    const summary = `${outcome.ok} ok, retryable ${JSON.stringify(outcome.retryable)}, ${outcome.wrong.length} wrong in ${outcome.seconds.toFixed(1)} s`
    assert.deepEqual(outcome.wrong.slice(0, 10), [], summary)
    assert.equal(outcome.ok + failed, total, summary)
    // The faults cost a share of the execs, not most of them.
    assert.ok(outcome.ok >= total / 2, summary)
  })

  it('adopts every sandbox back: all running, each answers, and the catalog agrees with runc on each host', async () => {
    const f = fleet!
    await until('every sandbox running again', async () => {
      const list = await Sandbox.list(f.conn())
      return list.length === ids.length && list.every((s) => s.state === 'running')
    }, 60_000)
    const listed = (await Sandbox.list(f.conn())).map((s) => s.id).sort()
    assert.deepEqual(listed, ids)
    for (const id of ids) assert.equal((await (await Sandbox.connect(id, f.conn())).commands.run(['echo', id])).stdout, `${id}\n`)
    const onHosts: string[] = []
    for (let i = 0; i < agents; i++) {
      const running = await containersOf(f.agentDir(i))
      assert.equal(running.length, perAgent, `agent ${i} runs ${running.join(', ')}`)
      onHosts.push(...running)
    }
    assert.deepEqual(onHosts.sort(), ids, 'each sandbox runs on exactly one host, and nothing else does')
  })

  it('leaves nothing once the sandboxes are destroyed and the processes stopped', async () => {
    const f = fleet!
    for (const id of ids) await Sandbox.kill(id, f.conn())
    assert.deepEqual(await Sandbox.list(f.conn()), [])
    for (let i = 0; i < agents; i++) assert.deepEqual(await containersOf(f.agentDir(i)), [], `agent ${i}`)
    const dirs = Array.from({ length: agents }, (_, i) => f.agentDir(i))
    const dir = f.dir
    fleet = undefined
    await f.stop(true)
    const found: string[] = []
    for (const id of ids) for (const d of dirs) found.push(...(await leftoversOf(d, id)))
    found.push(...(await loopDevicesUnder(dir)))
    found.push(...(await namespacesOf(dirs)).map((n) => `netns ${n}`))
    await rm(dir, { recursive: true, force: true })
    assert.deepEqual(found, [])
  })
})
