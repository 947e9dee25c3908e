/**
 * A Dockerfile's RUN steps run under the server's default egress policy: on a server started with
 * `--default-egress none`, a RUN step's build sandbox gets the deny-all policy that a sandbox
 * created with no internet gets. Checked in the agent's nftables table while the step runs; no
 * packet is sent anywhere.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { buildTemplate, listTemplates } from '@sandstorm/sdk/node'
import { skipReason, startBuildStack, type BuildStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason()

describe('RUN steps under the server\'s default egress', { skip: skip ?? false }, () => {
  let built: BuildStack
  let stack: Stack
  let ctx: string

  before(async () => {
    built = await startBuildStack('FROM debian\nRUN sleep 600\n', { defaultEgress: 'none' })
    ;({ stack, ctx } = built)
  })
  after(() => built?.close())

  /** The egress chains (`e_<slot>`) of the stack's nftables table. */
  async function egressChains(): Promise<string[]> {
    const table = `sandstorm_${createHash('sha256').update(stack.dataDir).digest('hex').slice(0, 6)}`
    const ruleset = (await execa('nft', ['list', 'table', 'inet', table])).stdout
    return ruleset.split('chain e_').slice(1)
  }

  it('gives a RUN step\'s sandbox the deny-all policy of --default-egress none', async () => {
    const cancel = new AbortController()
    let running!: () => void
    const started = new Promise<void>((resolve) => (running = resolve))
    const build = buildTemplate('egress-none', { ...stack.conn, context: ctx, signal: cancel.signal, onEvent: (e) => e.type === 'step' && e.cmd.startsWith('RUN') && running() })
    const ended = build.then(() => 'built', (err: Error) => err)
    await Promise.race([started, ended])
    // The step's sandbox is the only one: its chain is the only egress chain.
    const [chain] = await until('the build sandbox in the firewall', async () => {
      const sandboxes = await stack.agent.list()
      const chains = await egressChains()
      return sandboxes.length === 1 && chains.length === 1 && chains
    })
    cancel.abort()
    assert.notEqual(await ended, 'built')
    // As a sandbox created with allowInternetAccess false: everything refused, nothing allowed.
    assert.match(chain!, /ip daddr (?:\{ )?0\.0\.0\.0\/0(?: \})? reject/, `the build sandbox's chain refuses everything:\n${chain}`)
    await until('the build sandbox gone', async () => (await stack.agent.list()).length === 0 && (await egressChains()).length === 0)
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'egress-none'))
  })
})
