/**
 * The builder over a real layer store and a FROM template that is a directory; RUN needs a build
 * sandbox, so these cases have none but one, whose host answers an exit code without running
 * anything (test/dockerfile-build.test.ts runs RUN steps for real).
 */
import assert from 'node:assert/strict'
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import type { TemplateBuildEvent } from '../../shared/index.js'
import type { BuildHost, BuildRunRequest, ImageDefaults } from '../contracts.js'
import { createImageLayerStore } from '../layers/index.js'
import { BuildStepFailed } from '../../shared/index.js'
import { buildDockerfile } from './build-dockerfile.js'

let work: string
let ctx: string
let baseDir: string
let host: BuildHost
const runs: BuildRunRequest[] = []
let disposed = 0
const baseDefaults: ImageDefaults = { env: { PATH: '/usr/bin:/bin' }, exposedPorts: [], labels: {} }
/** The server's default egress as RUN steps get it: deny-all (`--default-egress none`). */
const egress = { allowOut: [], denyOut: ['0.0.0.0/0'] }

/** When the FROM template's version was built. */
let baseBuiltAt = '2026-01-01T00:00:00.000Z'

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sandstorm-dfbuild-'))
  ctx = join(work, 'ctx')
  baseDir = join(work, 'base')
  await mkdir(join(baseDir, 'etc'), { recursive: true })
  await writeFile(join(baseDir, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n')
  await mkdir(join(ctx, 'src'), { recursive: true })
  await writeFile(join(ctx, 'src/app.js'), 'v1')
  await writeFile(join(ctx, 'notes.md'), 'notes')
  await writeFile(join(ctx, '.dockerignore'), 'notes.md\n')
  const layers = createImageLayerStore({ dir: join(work, 'layers') })
  host = {
    layers,
    pull: async (reference) => {
      throw new SandstormError('not_found', `no image ${reference} here`)
    },
    template: async (name) => {
      if (name !== 'base') throw new SandstormError('not_found', `no template "${name}" (templates: base)`)
      return { chain: { lowerDirs: [baseDir], layerIds: [], readonlyBinds: [] }, defaults: baseDefaults, version: 1, builtAt: baseBuiltAt }
    },
    run: async (req, onOutput) => {
      runs.push(req)
      onOutput('stderr', Buffer.from('make: *** no rule\n'))
      return {
        exitCode: 2,
        commit: async () => assert.fail('a failed step is not committed'),
        dispose: async () => void disposed++,
      }
    },
  }
})
after(() => rm(work, { recursive: true, force: true }))

const dockerfile = 'FROM base\nENV APP=/srv/app\nWORKDIR $APP\nCOPY src/ ./\nCOPY . /ctx/\nLABEL v=1\n'

async function build(text = dockerfile, noCache = false) {
  const events: TemplateBuildEvent[] = []
  const result = await buildDockerfile({ dockerfile: text, contextDir: ctx, egress, host, onEvent: (e) => events.push(e), noCache })
  const stepEvents = events.filter((e): e is Extract<TemplateBuildEvent, { type: 'step' }> => e.type === 'step')
  return { result, events, layerSteps: stepEvents.filter((e) => e.cached !== undefined).map((e) => [e.index, e.cached]) }
}

describe('buildDockerfile', () => {
  it('builds layers, then finds every one in the cache, misses from a changed file on, and not for an ignored one', async () => {
    const first = await build()
    assert.deepEqual(first.layerSteps, [[2, false], [3, false], [4, false]])
    assert.equal(first.result.chain.lowerDirs.length, 4)
    assert.equal(first.result.chain.lowerDirs.at(-1), baseDir)
    assert.deepEqual(first.result.from, { template: 'base', version: 1 })
    assert.deepEqual(first.result.defaults, { env: { PATH: '/usr/bin:/bin', APP: '/srv/app' }, exposedPorts: [], labels: { v: '1' }, workingDir: '/srv/app' })
    const [ctxLayer, srcLayer] = first.result.chain.lowerDirs
    assert.equal(await readFile(join(srcLayer!, 'srv/app/app.js'), 'utf8'), 'v1')
    await assert.rejects(lstat(join(ctxLayer!, 'ctx/notes.md')), 'the ignored file is not copied')
    assert.equal(first.events.at(-1)?.type, 'step_end')

    const again = await build()
    assert.deepEqual(again.layerSteps, [[2, true], [3, true], [4, true]])
    assert.equal(again.result.cachedSteps, 3)
    assert.deepEqual(again.result.chain, first.result.chain)

    await writeFile(join(ctx, 'notes.md'), 'changed, but ignored')
    assert.deepEqual((await build()).layerSteps, [[2, true], [3, true], [4, true]])

    await writeFile(join(ctx, 'src/app.js'), 'v2')
    const changed = await build()
    assert.deepEqual(changed.layerSteps, [[2, true], [3, false], [4, false]], 'the COPY of the changed file and every step after it miss')
    assert.equal(await readFile(join(changed.result.chain.lowerDirs[1]!, 'srv/app/app.js'), 'utf8'), 'v2')

    assert.deepEqual((await build(dockerfile, true)).layerSteps, [[2, false], [3, false], [4, false]], 'noCache looks nothing up')
  })

  it('misses the cache over a template deleted and made again under the same version number', async () => {
    await build()
    assert.deepEqual((await build()).layerSteps, [[2, true], [3, true], [4, true]])
    // `base` v1 deleted and built anew (versions count from 1 again): another root under the same name and number.
    baseBuiltAt = new Date(Date.parse(baseBuiltAt) + 60_000).toISOString()
    try {
      assert.deepEqual((await build()).layerSteps, [[2, false], [3, false], [4, false]], 'steps built over the old base were reused')
    } finally {
      baseBuiltAt = '2026-01-01T00:00:00.000Z'
    }
  })

  it('refuses an unsupported instruction before anything runs', async () => {
    const events: TemplateBuildEvent[] = []
    await assert.rejects(
      buildDockerfile({ dockerfile: 'FROM base\nRUN true\nVOLUME /data\n', contextDir: ctx, egress, host, onEvent: (e) => events.push(e) }),
      (e: unknown) => e instanceof SandstormError && e.code === 'invalid_argument' && /line 3 \(VOLUME\)/.test(e.message),
    )
    assert.deepEqual(events, [])
    assert.equal(runs.length, 0)
  })

  it('fails a RUN that exits non-zero naming the step, its exit code and output, and disposes its sandbox', async () => {
    const events: TemplateBuildEvent[] = []
    await assert.rejects(
      buildDockerfile({ dockerfile: 'FROM base\nUSER 1000\nRUN make all\nRUN echo never\n', contextDir: ctx, egress, host, onEvent: (e) => events.push(e) }),
      (e: unknown) => {
        assert.ok(e instanceof BuildStepFailed)
        assert.equal(e.code, 'failed_precondition')
        assert.deepEqual(e.step, { index: 2, cmd: 'RUN make all', exitCode: 2, output: 'make: *** no rule\n' })
        assert.match(e.message, /build step 3 of 4 \("RUN make all"\) failed with exit code 2: make: \*\*\* no rule/)
        return true
      },
    )
    assert.equal(runs.length, 1)
    assert.deepEqual(runs[0]!.argv, ['/bin/sh', '-c', 'make all'])
    assert.equal(runs[0]!.user, '1000')
    assert.deepEqual(runs[0]!.network, { mode: 'veth', egress }, 'a RUN step gets the egress policy the build was given')
    assert.equal(disposed, 1)
    assert.deepEqual(events.slice(-3), [
      { type: 'step', index: 2, cmd: 'RUN make all', cached: false },
      { type: 'stderr', index: 2, data: Buffer.from('make: *** no rule\n').toString('base64') },
      { type: 'step_end', index: 2, exitCode: 2 },
    ])
  })

  it('gives a RUN --network=none step no network, whatever the egress policy', async () => {
    await assert.rejects(buildDockerfile({ dockerfile: 'FROM base\nRUN --network=none make offline\n', contextDir: ctx, egress, host }), BuildStepFailed)
    assert.deepEqual(runs.at(-1)!.argv, ['/bin/sh', '-c', 'make offline'])
    assert.deepEqual(runs.at(-1)!.network, { mode: 'none' })
  })

  it('names the templates there are when FROM is neither a template nor an image', async () => {
    await assert.rejects(buildDockerfile({ dockerfile: 'FROM nosuch\n', contextDir: ctx, egress, host }), (e: unknown) => e instanceof SandstormError && e.code === 'not_found' && /no template "nosuch" \(templates: base\).*no image nosuch/.test(e.message))
  })
})
