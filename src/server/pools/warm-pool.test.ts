import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { AgentApi, AgentCreateRequest, AgentSandbox } from '../../agent/index.js'
import { silentLogger } from '../../shared/index.js'
import { createWarmPool } from './warm-pool.js'

/** Just enough of an agent: creates resolve at once, destroys are recorded. */
function fakeAgent() {
  const running = new Map<string, AgentSandbox>()
  const destroyed: string[] = []
  const agent = {
    templates: async () => [{ name: 'debian', defaults: { memoryMiB: 512, cpus: 1 } }],
    create: async (req: AgentCreateRequest) => {
      const s: AgentSandbox = { id: req.id, template: req.template, runtime: 'fake', status: 'running' }
      running.set(req.id, s)
      return s
    },
    destroy: async (id: string) => {
      running.delete(id)
      destroyed.push(id)
    },
  } as unknown as AgentApi
  return { agent, running, destroyed }
}

/** A pool over the fake agent, and a way to wait until it has `n` ready. */
function poolOf(min: number, max: number) {
  const fake = fakeAgent()
  const waiters: (() => void)[] = []
  const pool = createWarmPool({
    config: { template: 'debian', min, max },
    network: { mode: 'veth', egress: { allowOut: [], denyOut: [] } },
    diskMiB: 2048,
    agent: fake.agent,
    logger: silentLogger(),
    pidsMax: 1024,
    shutdownSignal: new AbortController().signal,
    onChange: () => waiters.splice(0).forEach((w) => w()),
  })
  const ready = async (n: number): Promise<void> => {
    while (pool.counts().ready < n) await new Promise<void>((resolve) => waiters.push(resolve))
  }
  pool.refill()
  return { pool, ready, ...fake }
}

describe('createWarmPool', () => {
  it('fills to min, hands each sandbox out once, and refills', async () => {
    const { pool, ready } = poolOf(2, 4)
    await ready(2)
    const a = pool.take()
    const b = pool.take()
    assert.ok(a && b && a.id !== b.id)
    pool.refill()
    await ready(2)
    const handed = new Set([a.id, b.id])
    for (let i = 0; i < 2; i++) assert.ok(!handed.has(pool.take()!.id))
  })

  it('grows after a miss, and reaps idle sandboxes above min only', async () => {
    const { pool, ready, destroyed } = poolOf(1, 3)
    await ready(1)
    pool.noteMiss()
    pool.noteMiss()
    await ready(3)
    await pool.reap(60_000, Date.now())
    assert.equal(pool.counts().ready, 3, 'none has been idle long enough yet')
    await pool.reap(60_000, Date.now() + 60_000)
    assert.equal(pool.counts().ready, 1)
    assert.equal(destroyed.length, 2)
  })

  it('replaces a ready sandbox that no longer runs', async () => {
    const { pool, ready, running, destroyed } = poolOf(2, 2)
    await ready(2)
    const [gone] = [...running.keys()]
    running.get(gone!)!.status = 'stopped'
    await pool.check(new Map(running))
    assert.deepEqual(destroyed, [gone])
    await ready(2)
    assert.ok(![...running.keys()].includes(gone!))
  })

  it('destroys every ready sandbox when drained', async () => {
    const { pool, ready, running } = poolOf(2, 2)
    await ready(2)
    await pool.drain()
    assert.equal(running.size, 0)
    assert.equal(pool.take(), undefined)
  })
})
