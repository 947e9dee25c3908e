import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import type { AgentEntry } from './agent-registry.js'
import { constraintsOf, pickAgent, type AgentLoad } from './scheduler.js'

const agent = (id: string, over: Partial<AgentEntry> = {}): AgentEntry => ({
  id,
  hostname: id,
  info: { id, hostname: id, runtimes: ['runc'], cpus: 2, memoryMiB: 4096 },
  labels: {},
  templates: ['debian'],
  state: 'live',
  lastHeartbeatMs: 0,
  metrics: null,
  api: null,
  conn: null,
  ...over,
})
const want = { template: 'debian', memoryMiB: 512, cpus: 1, constraints: {} }
const code = (c: string) => (err: unknown) => err instanceof SandstormError && err.code === c

describe('pickAgent', () => {
  it('spreads: the agent with the fewest sandboxes wins', () => {
    const loads = new Map<string, AgentLoad>([['a', { sandboxes: 2, memoryMiB: 1024, cpus: 2 }], ['b', { sandboxes: 1, memoryMiB: 512, cpus: 1 }]])
    assert.equal(pickAgent([agent('a'), agent('b'), agent('c', { state: 'lost' })], loads, want).id, 'b')
  })
  it('skips agents without the template, without room, or without the labels asked for', () => {
    const loads = new Map<string, AgentLoad>([['full', { sandboxes: 1, memoryMiB: 4000, cpus: 1 }]])
    const agents = [agent('full'), agent('other', { templates: ['alpine'] }), agent('zoned', { labels: { zone: 'a' } }), agent('plain')]
    assert.equal(pickAgent(agents, loads, { ...want, constraints: { zone: 'a' } }).id, 'zoned')
    assert.throws(() => pickAgent(agents, loads, { ...want, constraints: { zone: 'b' } }), code('failed_precondition'))
    assert.throws(() => pickAgent([agent('other', { templates: ['alpine'] })], loads, want), code('not_found'))
    assert.throws(() => pickAgent([agent('full')], loads, want), code('resource_exhausted'))
    assert.throws(() => pickAgent([agent('gone', { state: 'lost' })], loads, want), code('unavailable'))
  })
  it('reads placement constraints from agent.* labels', () => {
    assert.deepEqual(constraintsOf({ 'agent.zone': 'a', team: 'x' }), { zone: 'a' })
  })
})
