/**
 * What stops an image template build that would run for good (`RUN sleep 600`): the server's
 * build deadline (given tiny here), a newer E2B build request of the same template, and a delete
 * of the template. Each leaves no build sandbox and no template behind.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Template } from 'e2b'
import { buildGoldenTemplate, buildTemplate, deleteTemplate, listTemplates, type TemplateBuildEvent } from '@sandstorm/sdk/node'
import { useStackForE2b } from './helpers/e2b-env.js'
import { leftoversOf } from './helpers/leftovers.js'
import { scratchTemplatesDir, skipReason, startBuildStack, startStack, type BuildStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason()

/** The id of the build sandbox (of a RUN step, or of a build from steps of `template`), once the agent runs one. */
const buildSandbox = (stack: Stack, template = 'build'): Promise<string> => until('a build sandbox', async () => (await stack.agent.list()).find((s) => s.template === template)?.id)

describe('a build past the server\'s build deadline', { skip: skip ?? false }, () => {
  let built: BuildStack
  let stack: Stack
  let ctx: string

  before(async () => {
    // Long enough for the RUN step to start, short enough for a test.
    built = await startBuildStack('FROM debian\nRUN echo started && sleep 600\n', { buildTimeoutMs: 30_000 })
    ;({ stack, ctx } = built)
  })
  after(() => built?.close())

  it('fails with deadline_exceeded, and once it says so its build sandbox and the template are gone', async () => {
    const events: TemplateBuildEvent[] = []
    let sandbox: Promise<string> | undefined
    const onEvent = (e: TemplateBuildEvent): void => {
      events.push(e)
      if (e.type === 'step' && e.cmd.startsWith('RUN')) sandbox = buildSandbox(stack)
    }
    // Only so that a server with no deadline fails this test (canceled) instead of hanging it.
    const giveUp = AbortSignal.timeout(240_000)
    await assert.rejects(buildTemplate('never-done', { ...stack.conn, context: ctx, onEvent, signal: giveUp }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'deadline_exceeded', err.message)
      assert.match(err.message, /^build of template "never-done" ran past the server's build deadline of 30000 ms/)
      return true
    })
    assert.ok(sandbox, `the RUN step started: ${JSON.stringify(events.map((e) => e.type))}`)
    const id = await sandbox
    assert.deepEqual(await stack.agent.list(), [], 'no sandbox is left once the build has failed')
    assert.deepEqual(await leftoversOf(stack.dataDir, id), [])
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'never-done'))
    assert.ok(!existsSync(join(built.templatesDir, 'never-done')), 'no template dir was made')
  })
})

describe('a build from steps past the server\'s build deadline', { skip: skip ?? false }, () => {
  let stack: Stack
  let templates: { dir: string; remove(): Promise<void> }

  before(async () => {
    templates = await scratchTemplatesDir()
    stack = await startStack({ templatesDir: templates.dir, buildTimeoutMs: 15_000 })
  })
  after(async () => {
    await stack?.close()
    await templates?.remove()
  })

  it('fails with deadline_exceeded, and its build sandbox, snapshot and template are gone', async () => {
    let sandbox: Promise<string> | undefined
    const onEvent = (e: TemplateBuildEvent): void => void (e.type === 'step' && (sandbox ??= buildSandbox(stack, 'debian')))
    const giveUp = AbortSignal.timeout(240_000)
    await assert.rejects(buildGoldenTemplate('steps-never-done', { from: 'debian', steps: ['echo started', 'sleep 600'] }, { ...stack.conn, onEvent, signal: giveUp }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'deadline_exceeded', err.message)
      assert.match(err.message, /^build of template "steps-never-done" ran past the server's build deadline of 15000 ms/)
      return true
    })
    assert.ok(sandbox, 'a step started')
    const id = await sandbox
    assert.deepEqual(await stack.agent.list(), [], 'no sandbox is left once the build has failed')
    assert.deepEqual(await leftoversOf(stack.dataDir, id), [])
    assert.deepEqual(await stack.agent.snapshots!.list(), [], 'no snapshot is left')
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'steps-never-done'))
  })
})

describe('a running E2B template build is stopped by a newer one or a delete', { skip: skip ?? false }, () => {
  let stack: Stack
  let templates: { dir: string; remove(): Promise<void> }
  const forever = () => Template().fromTemplate('debian').runCmd('sleep 600')

  before(async () => {
    templates = await scratchTemplatesDir()
    stack = await startStack({ templatesDir: templates.dir })
    useStackForE2b(stack)
  })
  after(async () => {
    await deleteTemplate('e2b-rebuilt', stack.conn).catch(() => undefined)
    await stack?.close()
    await templates?.remove()
  })

  it('a newer build request of the template stops the running one, which leaves nothing, and builds', async () => {
    const first = await Template.buildInBackground(forever(), 'e2b-rebuilt')
    const sandbox = await buildSandbox(stack)
    await Template.build(Template().fromTemplate('debian').runCmd('echo second > /second.txt'), 'e2b-rebuilt')
    const status = await Template.getBuildStatus(first)
    assert.equal(status.status, 'error')
    assert.match(status.reason?.message ?? '', /^superseded by a newer build of template "e2b-rebuilt"$/)
    assert.deepEqual(await leftoversOf(stack.dataDir, sandbox), [])
    assert.deepEqual((await stack.agent.list()).filter((s) => s.template === 'build'), [])
    assert.equal((await listTemplates(stack.conn)).find((t) => t.name === 'e2b-rebuilt')?.version, 1, 'only the newer build made a version')
  })

  it('deleting the template stops its running build, and leaves no template', async () => {
    const first = await Template.buildInBackground(forever(), 'e2b-deleted')
    const sandbox = await buildSandbox(stack)
    assert.deepEqual(await deleteTemplate('e2b-deleted', stack.conn), { removedLayers: 0 })
    const status = await until('the build to end', async () => {
      const s = await Template.getBuildStatus(first)
      return s.status !== 'building' && s
    })
    assert.equal(status.status, 'error')
    assert.match(status.reason?.message ?? '', /^template "e2b-deleted" was deleted while it was being built$/)
    assert.deepEqual(await leftoversOf(stack.dataDir, sandbox), [])
    assert.equal(await Template.exists('e2b-deleted'), false)
  })
})
