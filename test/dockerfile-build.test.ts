/**
 * Templates from Dockerfiles through the real server API, the SDK and runc build sandboxes: FROM
 * the debian template, RUN, COPY --chown with a .dockerignore, ENV/WORKDIR/USER seen in a sandbox
 * of the result, a rebuild that is all cache hits, a changed file that misses from its COPY on, a
 * failing RUN that names its step and leaves no template, and a refusal before anything runs; a
 * RUN's device nodes are not committed.
 */
import assert from 'node:assert/strict'
import { lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { buildTemplate, deleteTemplate, failedStepOf, listTemplates, Sandbox, type TemplateBuildEvent } from '@sandstorm/sdk/node'
import { scratchTemplatesDir, skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason()

const dockerfile = `FROM debian
ARG GREETING=hello
ENV APP_HOME=/srv/app MODE=test
RUN useradd -m -u 1234 builder && echo "$GREETING from run" > /greeting
USER builder
WORKDIR $APP_HOME
COPY --chown=builder:builder app/ ./
COPY . /ctx/
RUN id -un > whoami.txt && echo "mode=$MODE greeting=$GREETING"
LABEL org.example.kind=test
CMD ["cat", "/greeting"]
`

type StepEvent = Extract<TemplateBuildEvent, { type: 'step' }>

describe('templates from Dockerfiles', { skip: skip ?? false }, () => {
  let stack: Stack
  let templates: { dir: string; remove(): Promise<void> }
  let ctx: string

  async function build(name: string, file = 'Dockerfile', extra: { buildArgs?: Record<string, string> } = {}) {
    const events: TemplateBuildEvent[] = []
    const { template } = await buildTemplate(name, { ...stack.conn, context: ctx, dockerfile: file, buildArgs: { GREETING: 'hi' }, ...extra, onEvent: (e) => events.push(e) })
    const steps = events.filter((e): e is StepEvent => e.type === 'step')
    return { template, events, steps, layerSteps: steps.filter((s) => s.cached !== undefined) }
  }

  before(async () => {
    ctx = await mkdtemp(join(tmpdir(), 'sandstorm-dockerfile-ctx-'))
    await mkdir(join(ctx, 'app'))
    await writeFile(join(ctx, 'Dockerfile'), dockerfile)
    await writeFile(join(ctx, 'app/hello.txt'), 'hello v1\n')
    await writeFile(join(ctx, 'secret.txt'), 'do not ship\n')
    await writeFile(join(ctx, '.dockerignore'), '# not in the image\nsecret.txt\n')
    await writeFile(join(ctx, 'Dockerfile.fails'), 'FROM debian\nRUN echo building && echo "oops: no such thing" >&2 && exit 3\nRUN echo never\n')
    await writeFile(join(ctx, 'Dockerfile.refused'), 'FROM debian\nRUN touch /ran\nHEALTHCHECK CMD true\n')
    templates = await scratchTemplatesDir()
    stack = await startStack({ templatesDir: templates.dir })
  })
  after(async () => {
    await deleteTemplate('dfapp', stack.conn).catch(() => undefined)
    await stack?.close()
    await templates?.remove()
    await rm(ctx, { recursive: true, force: true })
  })

  test('a build FROM the debian template runs RUN, COPY --chown, .dockerignore, and its sandboxes get ENV, WORKDIR and USER', async () => {
    const first = await build('dfapp')
    assert.deepEqual(first.template.source, { kind: 'dockerfile', template: 'debian' })
    assert.deepEqual(first.template.config?.cmd, ['cat', '/greeting'])
    assert.equal(first.template.config?.labels['org.example.kind'], 'test')
    assert.deepEqual(first.steps.map((s) => [s.index, s.cmd]).slice(0, 4), [[0, 'FROM debian'], [1, 'ARG GREETING=hello'], [2, 'ENV APP_HOME=/srv/app MODE=test'], [3, 'RUN useradd -m -u 1234 builder && echo "$GREETING from run" > /greeting']])
    assert.ok(first.layerSteps.length >= 4 && first.layerSteps.every((s) => s.cached === false), 'a first build makes every layer')
    const out = first.events.filter((e) => e.type === 'stdout' && e.index === 8).map((e) => Buffer.from((e as { data: string }).data, 'base64').toString()).join('')
    assert.equal(out, 'mode=test greeting=hi\n')
    assert.ok(first.events.some((e) => e.type === 'step_end' && e.index === 8 && e.exitCode === 0))

    const sbx = await Sandbox.create('dfapp', { ...stack.conn })
    try {
      const r = await sbx.commands.run('pwd; id -un; echo "$APP_HOME $MODE ${GREETING:-no-arg}"; cat whoami.txt; stat -c "%U:%G %n" hello.txt; cat hello.txt; ls -A /ctx; cat /greeting')
      assert.equal(r.stdout, '/srv/app\nbuilder\n/srv/app test no-arg\nbuilder\nbuilder:builder hello.txt\nhello v1\n.dockerignore\nDockerfile\nDockerfile.fails\nDockerfile.refused\napp\nhi from run\n')
    } finally {
      await sbx.kill()
    }
  })

  test('an unchanged rebuild is all cache hits and runs nothing; a changed file misses from its COPY on', async () => {
    const again = await build('dfapp')
    assert.ok(again.layerSteps.length >= 4)
    assert.deepEqual(again.layerSteps.filter((s) => !s.cached), [], 'every step event is cached')
    assert.deepEqual(again.events.filter((e) => e.type === 'stdout' || e.type === 'stderr'), [], 'no RUN ran')

    await writeFile(join(ctx, 'secret.txt'), 'an ignored change\n')
    assert.deepEqual((await build('dfapp')).layerSteps.filter((s) => !s.cached), [], 'an ignored file changes no key')

    await writeFile(join(ctx, 'app/hello.txt'), 'hello v2\n')
    const changed = await build('dfapp')
    assert.deepEqual(
      changed.layerSteps.map((s) => [s.cmd.split(' ')[0], s.cached]),
      [['RUN', true], ['WORKDIR', true], ['COPY', false], ['COPY', false], ['RUN', false]],
    )
    const sbx = await Sandbox.create('dfapp', { ...stack.conn })
    try {
      assert.equal((await sbx.commands.run('cat hello.txt')).stdout, 'hello v2\n')
    } finally {
      await sbx.kill()
    }
  })

  test('a failing RUN names its step, shows its output and leaves no template', async () => {
    const events: TemplateBuildEvent[] = []
    await assert.rejects(
      buildTemplate('dfbad', { ...stack.conn, context: ctx, dockerfile: 'Dockerfile.fails', onEvent: (e) => events.push(e) }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'failed_precondition')
        assert.match(err.message, /build step 2 of 3 \("RUN echo building && echo \\"oops: no such thing\\" >&2 && exit 3"\) failed with exit code 3: .*oops: no such thing/s)
        const step = failedStepOf(err)
        assert.equal(step?.index, 1)
        assert.equal(step?.exitCode, 3)
        assert.match(step?.output ?? '', /building\n[\s\S]*oops: no such thing/)
        return true
      },
    )
    assert.ok(!events.some((e) => e.type === 'step' && e.index === 2), 'nothing after the failed step ran')
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'dfbad'))
  })

  test('an unsupported instruction is refused before anything runs', async () => {
    const events: TemplateBuildEvent[] = []
    await assert.rejects(
      buildTemplate('dfrefused', { ...stack.conn, context: ctx, dockerfile: 'Dockerfile.refused', onEvent: (e) => events.push(e) }),
      (err: Error & { code?: string }) => err.code === 'invalid_argument' && /line 3 \(HEALTHCHECK\)/.test(err.message),
    )
    assert.deepEqual(events.filter((e) => e.type === 'step' || e.type === 'stdout'), [])
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'dfrefused'))
  })

  test("a RUN's block and character devices are not committed to its layer (as an image's are not unpacked); its fifo is", async () => {
    // The build sandbox has CAP_MKNOD: a block device of the host's first disk, open to all.
    await writeFile(join(ctx, 'Dockerfile.devices'), 'FROM debian\nRUN mknod /dev-test-block b 8 0 && chmod 666 /dev-test-block && mknod /dev-test-char c 1 3 && mkfifo /dev-test-fifo && ls -l /dev-test-block /dev-test-char /dev-test-fifo\n')
    const events: TemplateBuildEvent[] = []
    await buildTemplate('dfdevices', { ...stack.conn, context: ctx, dockerfile: 'Dockerfile.devices', onEvent: (e) => events.push(e) })
    try {
      const out = events.filter((e) => e.type === 'stdout').map((e) => Buffer.from((e as { data: string }).data, 'base64').toString()).join('')
      assert.match(out, /^brw-rw-rw- .* 8, +0 .*\/dev-test-block$/m, 'the step made the block device')
      // The step's layer on the host: the one that holds its fifo.
      const layersDir = join(templates.dir, '.layers')
      const names = await readdir(layersDir)
      const layers = names.filter((n) => /^[0-9a-f]{64}$/.test(n) && names.includes(`${n}.json`))
      const own = []
      for (const l of layers) if (await lstat(join(layersDir, l, 'dev-test-fifo')).then((st) => st.isFIFO(), () => false)) own.push(l)
      assert.equal(own.length, 1, `one layer holds the step's fifo, got ${own.length}`)
      assert.deepEqual((await readdir(join(layersDir, own[0]!))).filter((n) => n.startsWith('dev-test-')), ['dev-test-fifo'])
      const sbx = await Sandbox.create('dfdevices', { ...stack.conn })
      try {
        assert.equal((await sbx.commands.run('for p in /dev-test-block /dev-test-char; do test -e $p && echo "$p is there"; done; test -p /dev-test-fifo && echo fifo')).stdout, 'fifo\n')
      } finally {
        await sbx.kill()
      }
    } finally {
      await deleteTemplate('dfdevices', stack.conn).catch(() => undefined)
    }
  })

  test('the template a build stands on (FROM) cannot be deleted while the build runs', async () => {
    await writeFile(join(ctx, 'Dockerfile.base'), 'FROM debian\nRUN echo base > /base.txt\n')
    await writeFile(join(ctx, 'Dockerfile.child'), 'FROM dfbase\nRUN sleep 3 && cat /base.txt\n')
    await buildTemplate('dfbase', { ...stack.conn, context: ctx, dockerfile: 'Dockerfile.base' })
    try {
      let running!: () => void
      const started = new Promise<void>((resolve) => (running = resolve))
      const child = buildTemplate('dfchild', { ...stack.conn, context: ctx, dockerfile: 'Dockerfile.child', onEvent: (e) => e.type === 'step' && e.cmd.startsWith('RUN') && running() })
      await started
      await assert.rejects(deleteTemplate('dfbase', stack.conn), (err: Error & { code?: string }) => err.code === 'failed_precondition' && /base of a build in progress/.test(err.message))
      await child
      const sbx = await Sandbox.create('dfchild', { ...stack.conn })
      try {
        assert.equal((await sbx.commands.run('cat /base.txt')).stdout, 'base\n')
      } finally {
        await sbx.kill()
      }
    } finally {
      await deleteTemplate('dfchild', stack.conn).catch(() => undefined)
      await deleteTemplate('dfbase', stack.conn).catch(() => undefined)
    }
  })
})

describe('a Dockerfile build step has a disk of its own', { skip: skip ?? false }, () => {
  let stack: Stack
  let templates: { dir: string; remove(): Promise<void> }
  let ctx: string
  before(async () => {
    ctx = await mkdtemp(join(tmpdir(), 'sandstorm-dockerfile-disk-'))
    await writeFile(join(ctx, 'Dockerfile'), 'FROM debian\nRUN head -c 24M /dev/zero > /fits && echo fits && head -c 100M /dev/zero > /big\n')
    templates = await scratchTemplatesDir()
    // A layer may be 64 MiB here, and so is a step's disk.
    stack = await startStack({ templatesDir: templates.dir, maxLayerBytes: 64 * 1024 ** 2 })
  })
  after(async () => {
    await stack?.close()
    await templates?.remove()
    await rm(ctx, { recursive: true, force: true })
  })

  test('a step that writes more than a layer may hold fills its own disk, not the host, and fails naming it', async () => {
    await assert.rejects(buildTemplate('dffull', { ...stack.conn, context: ctx }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'failed_precondition', err.message)
      const step = failedStepOf(err)
      assert.equal(step?.index, 1)
      assert.match(step?.output ?? '', /fits\n[\s\S]*No space left on device/)
      return true
    })
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'dffull'))
  })
})
