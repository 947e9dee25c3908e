import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { TemplateInfo } from '../../shared/index.js'
import { parseInput } from '../validation.js'
import { dockerfilePlan } from './template-build-dockerfile.js'
import { buildEventLog } from './template-build-log.js'
import { createTemplateBuildStore } from './template-build-store.js'
import type { TemplateBuildStore } from './template-build-store.js'
import { startBuildBody } from './template-build-wire.js'

const b64 = (text: string) => Buffer.from(text).toString('base64')

describe("a build's events as E2B's build log", () => {
  let dir: string
  let store: TemplateBuildStore
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-template-build-log-'))
    store = createTemplateBuildStore({ dir: join(dir, 'builds') })
  })
  after(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  const body = parseInput(startBuildBody, {
    fromTemplate: 'debian',
    steps: [
      { type: 'RUN', args: ['make', 'nobody'] },
      { type: 'RUN', args: ['echo one; echo two >&2; exit 3'] },
    ],
  })
  const plan = dockerfilePlan(body)

  it("logs output line by line under the user's step, and a failed step's reason names it with its exit code and last lines", async () => {
    const build = await store.request('app', {})
    const events = buildEventLog(store, build, body.steps, plan)
    // Dockerfile lines: 0 FROM, 1-3 the first step (USER, RUN, USER), 4 the second step.
    events.emit({ type: 'progress', message: 'template debian' })
    events.emit({ type: 'step', index: 2, cmd: 'RUN ["/bin/sh","-c","make"]', cached: true })
    events.emit({ type: 'step', index: 4, cmd: 'RUN [...]' })
    events.emit({ type: 'stdout', index: 4, data: b64('one\ntw') })
    events.emit({ type: 'stdout', index: 4, data: b64('o-and-a-half') })
    events.emit({ type: 'stderr', index: 4, data: b64('two\n') })
    events.emit({ type: 'step_end', index: 4, exitCode: 3 })
    events.emit({ type: 'error', code: 'failed_precondition', message: 'build step 5 of 5 failed', step: { index: 4, cmd: 'RUN [...]', exitCode: 3, output: 'one\ntwo-and-a-half\ntwo\n' } })

    assert.deepEqual(
      build.log.map((e) => [e.level, e.message, e.step]),
      [
        ['info', 'template debian', undefined],
        ['info', 'step 1 (RUN make): RUN ["/bin/sh","-c","make"] (cached)', '1'],
        ['info', 'step 2 (RUN echo one; echo two >&2; exit 3): RUN [...]', '2'],
        ['info', 'one', '2'],
        ['info', 'two', '2'],
        ['info', 'two-and-a-half', '2'],
        ['error', 'exited with code 3', '2'],
        ['error', 'step 2 (RUN echo one; echo two >&2; exit 3) failed with exit code 3: one\ntwo-and-a-half\ntwo', '2'],
      ],
    )
    const end = events.end()
    assert.equal(end.status, 'error')
    assert.equal(end.reason?.step, '2')
    assert.deepEqual(end.reason?.logEntries?.map((e) => e.message), ['one', 'two', 'two-and-a-half'])
    await store.finish(build, end.status, end.reason)
    assert.deepEqual(await readdir(join(dir, 'builds')), [], "the build's temp dir is gone")
  })

  it('is ready after done, and an error without an end event', async () => {
    const build = await store.request('app', {})
    const events = buildEventLog(store, build, body.steps, plan)
    assert.equal(events.end().status, 'error')
    events.emit({ type: 'done', template: { name: 'app', version: 2 } as TemplateInfo })
    assert.deepEqual(events.end(), { status: 'ready' })
    assert.deepEqual(build.log.at(-1)?.step, 'finalize')
    await store.finish(build, 'ready')
  })

  it("cuts a build's log at 20,000 lines, saying so, and each line at 4 KiB", async () => {
    const build = await store.request('chatty', {})
    for (let i = 0; i < 20_005; i++) store.log(build, 'info', i === 0 ? 'x'.repeat(10_000) : `line ${i}`)
    assert.equal(build.log.length, 20_001)
    assert.equal(build.log[0]!.message.length, 4096 + 3)
    assert.deepEqual([build.log.at(-1)!.level, build.log.at(-1)!.message], ['warn', 'log cut at 20000 lines (20000 lines or 8388608 characters at most)'])
    await store.finish(build, 'ready')
  })

  it("cuts a build's log at 8 Mi characters too: long lines fill it before the count does", async () => {
    const build = await store.request('wide', {})
    for (let i = 0; i < 5000; i++) store.log(build, 'info', 'y'.repeat(4096))
    assert.equal(build.log.length, 2049)
    assert.equal(build.log.at(-1)!.level, 'warn')
    await store.finish(build, 'ready')
  })

  it('logs output without a newline in pieces as it comes, not by splitting all of it again at each chunk', async () => {
    const build = await store.request('noisy', {})
    const events = buildEventLog(store, build, body.steps, plan)
    events.emit({ type: 'step', index: 4, cmd: 'RUN [...]' })
    const chunk = b64('a'.repeat(64 * 1024))
    for (let i = 0; i < 1000; i++) events.emit({ type: 'stdout', index: 4, data: chunk })
    // 64 MiB without a newline: logged as 4096-character pieces (until the log is full), none held back.
    const pieces = build.log.filter((e) => e.message === 'a'.repeat(4096))
    assert.ok(pieces.length >= 2000, `${pieces.length} pieces logged`)
    events.emit({ type: 'step_end', index: 4, exitCode: 0 })
    await store.finish(build, 'ready')
  })

  it('holds at most 64 builds waiting or running at once; the next is refused until one ends', async () => {
    const open = []
    for (let i = 0; i < 64; i++) open.push(await store.request(`many-${i}`, {}))
    await assert.rejects(store.request('one-too-many', {}), /64 template builds are waiting or running, the most at once/)
    await store.finish(open[0]!, 'error', { message: 'done with it' })
    const next = await store.request('one-too-many', {})
    for (const b of [...open.slice(1), next]) await store.finish(b, 'ready')
  })

  it('keeps one build of a name at a time: a newer request supersedes a waiting one, and stops a running one, waiting for its end', async () => {
    const first = await store.request('one', {})
    const second = await store.request('one', {})
    assert.equal(first.status, 'error')
    assert.match(first.reason?.message ?? '', /superseded/)
    assert.equal(store.waiting('one'), second)
    second.status = 'building'
    let thirdCame = false
    const third = store.request('one', {}).then((b) => ((thirdCame = true), b))
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(second.controller.signal.aborted, true, 'the running build is stopped')
    assert.match(String((second.controller.signal.reason as Error).message), /superseded by a newer build of template "one"/)
    assert.equal(thirdCame, false, 'the newer request waits until the stopped build has ended')
    // What the stopped build's run does once its sandbox is gone.
    await store.finish(second, 'error', { message: 'stopped' })
    const next = await third
    assert.equal(store.waiting('one'), next)
    await store.finish(next, 'ready')
    assert.throws(() => store.get('two', second.buildId), /not found/)
  })

  it('leaves one build waiting when two requests waited on the same running build', async () => {
    const running = await store.request('pair', {})
    running.status = 'building'
    const [a, b] = [store.request('pair', {}), store.request('pair', {})]
    await store.finish(running, 'error', { message: 'stopped' })
    const [first, last] = await Promise.all([a, b])
    assert.equal(store.waiting('pair'), last, 'the later request is the one waiting')
    assert.equal(first.status, 'error')
    assert.match(first.reason?.message ?? '', /superseded/)
    await store.finish(last, 'ready')
  })
})
