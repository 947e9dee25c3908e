/**
 * What a compromised agent tells the server on its own, over the real link: a registration or a
 * heartbeat with numbers no host has, more templates or labels than the server keeps, is refused
 * (its link ended), and what is logged of a registration is its size, not its contents.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { maxTemplatesPerAgent } from '../../agent/index.js'
import { captureLogs } from '../test-server.fixture.js'
import type { LogCapture } from '../test-server.fixture.js'
import { startHostileFleet, within } from './hostile-agent.fixture.js'
import type { HostileFleet } from './hostile-agent.fixture.js'

const info = { hostname: 'hostile', runtimes: ['runc'], cpus: 64, memoryMiB: 1 << 20 }
const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `t${i}`)

describe('what a hostile agent tells the server on its own', () => {
  let fleet: HostileFleet
  let logs: LogCapture
  before(async () => {
    logs = captureLogs()
    fleet = await startHostileFleet({ server: { logger: logs.logger } })
  })
  after(() => fleet.close())

  it('a registration with a capacity no host has, or more templates or labels than kept, is refused whole', async () => {
    const refused = [
      [{ infoJson: JSON.stringify({ ...info, memoryMiB: 1e300 }) }, /register\.info/],
      [{ infoJson: JSON.stringify({ ...info, cpus: 1e9 }) }, /register\.info/],
      [{ infoJson: JSON.stringify({ ...info, runtimes: ['x'.repeat(200)] }) }, /register\.info/],
      [{ infoJson: JSON.stringify({ ...info, hostname: 'evil\nhost' }) }, /register\.info/],
      [{ templatesJson: JSON.stringify(names(maxTemplatesPerAgent + 1)) }, /register\.templates/],
      [{ labelsJson: JSON.stringify({ ['k'.repeat(64)]: 'v' }) }, /register\.labels/],
      [{ labelsJson: JSON.stringify({ zone: '\u001b[2J' }) }, /register\.labels/],
    ] as const
    for (const [i, [fields, field]] of refused.entries()) {
      const h = fleet.connect(30 + i)
      h.register(fields)
      const end = await within(h.ended, 5000, `the link of registration ${i} to end`)
      assert.equal(end.code, grpc.status.INVALID_ARGUMENT, `registration ${i}`)
      assert.match(end.details, field)
    }
  })

  it('a heartbeat with numbers no host has ends the link', async () => {
    const beat = { load1: 0, memoryFreeMib: 1024, memoryTotalMib: 4096, diskFreeMib: 1024, sandboxes: 0, templatesJson: '' }
    for (const [i, bad] of [{ load1: -1e308 }, { memoryTotalMib: 1e300 }, { sandboxes: -1 }, { templatesJson: JSON.stringify(names(maxTemplatesPerAgent + 1)) }].entries()) {
      const h = await fleet.hostile(40 + i)
      h.send({ heartbeat: { ...beat, ...bad } })
      const end = await within(h.ended, 5000, `the link of heartbeat ${i} to end`)
      assert.equal(end.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(bad).slice(0, 80))
      assert.match(end.details, /heartbeat/)
    }
  })

  it('a registration is logged with the number of its templates, not their names', async () => {
    const h = await fleet.hostile(50, { templatesJson: JSON.stringify(names(maxTemplatesPerAgent)) })
    const line = await logs.waitFor((r) => r.msg === 'agent registered' && r.agentId === h.agentId)
    assert.equal(line.templates, maxTemplatesPerAgent)
  })
})
