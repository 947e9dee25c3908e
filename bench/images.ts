/**
 * images: templates from OCI images and Dockerfiles, on a stack of the benchmark's own (its own
 * template dir, so that the layer store starts empty and goes with it) and a docker-registry on
 * loopback holding a ~100 MB image made for the run. A cold build is timed beside `skopeo copy` +
 * `umoci unpack` of the same image, a cached Dockerfile rebuild beside the same build with
 * noCache, and creates from the image template beside creates from `debian`, interleaved.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { buildTemplate, deleteTemplate, pruneTemplateLayers, Sandbox, type TemplateBuildEvent } from '@sandstorm/sdk/node'
import { startRegistry } from '../test/helpers/registry.js'
import { scratchTemplatesDir } from '../test/helpers/stack.js'
import { startBenchStack, type BenchStack } from './bench-stack.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import { pushBenchImage, type BenchImage } from './image-fixture.js'
import type { BenchResult, Figure } from './report.js'
import { summarize, timed } from './stats.js'

const buildIterations = 4
const createIterations = 20
const createWarmups = 2
const baseTemplate = 'bench-image'

const MB = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`

/** The layer dirs in a template dir's layer store. */
async function storedLayers(templatesDir: string): Promise<string[]> {
  return (await readdir(join(templatesDir, '.layers')).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n))
}

/** `skopeo copy` of the image to an OCI layout, then `umoci unpack` of it to a bundle: the pair's wall time. */
async function skopeoUmoci(image: BenchImage): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-bench-skopeo-'))
  try {
    const { ms } = await timed(async () => {
      await execa('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${image.reference}`, `oci:${join(dir, 'layout')}:x`])
      await execa('umoci', ['unpack', '--image', `${join(dir, 'layout')}:x`, join(dir, 'bundle')])
    })
    return ms
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** A ratio's line for the notes, against a goal of `atMost` times the baseline. */
function ratioGoal(figure: Figure, atMost: number, label: string): string {
  const r = figure.subject.p50 / figure.baseline!.summary.p50
  return `goal ${label}: p50 ratio ${r.toFixed(2)}x (<= ${atMost.toFixed(2)}x) ${r <= atMost ? 'met' : 'MISSED'}`
}

/** Rows 1 and 2: a cold pull (empty layer store) and a pull that finds every layer, beside skopeo + umoci. */
async function buildRows(ctx: BenchContext, stack: BenchStack, templatesDir: string, image: BenchImage, n: number, notes: string[]): Promise<Figure[]> {
  const cold: number[] = []
  const warm: number[] = []
  const base: number[] = []
  const build = async (name: string) => (await timed(() => buildTemplate(name, { ...stack.conn, image: image.reference }))).ms
  // Each round ends as it started: no template of the image, no layer in the store.
  const round = async (i: number): Promise<[number, number, number]> => {
    const baseMs = await skopeoUmoci(image)
    const coldMs = await build(`bench-cold-${i}`)
    const warmMs = await build(`bench-warm-${i}`)
    const removed = (await deleteTemplate(`bench-warm-${i}`, stack.conn)).removedLayers + (await deleteTemplate(`bench-cold-${i}`, stack.conn)).removedLayers
    const left = await storedLayers(templatesDir)
    if (removed !== image.layers || left.length > 0) throw new Error(`the deletes freed ${removed} of ${image.layers} layers and left ${left.length} in the store: the next pull would not be cold`)
    return [coldMs, warmMs, baseMs]
  }
  await round(-1)
  for (let i = 0; i < n; i++) {
    checkAborted(ctx.signal)
    const [c, w, b] = await round(i)
    cold.push(c)
    warm.push(w)
    base.push(b)
    ctx.progress(`images: build ${i + 1}/${n}`)
  }
  const baseline = { what: 'skopeo copy docker:// oci: + umoci unpack', summary: summarize(base) }
  const coldFigure: Figure = { what: `template build from a ~${MB(image.unpackedBytes)} image (cold)`, unit: 'ms', subject: summarize(cold), baseline }
  notes.push(
    `image: ${image.layers} layers, ${MB(image.unpackedBytes)} unpacked, ${MB(image.compressedBytes)} gzip in a docker-registry on 127.0.0.1 (busybox root, 64 MiB random bytes, host /usr/lib files)`,
    `cold: a fresh template name and an empty layer store each time (both templates deleted, ${image.layers} layers freed, checked, after each round); 1 warm-up round not counted`,
    ratioGoal(coldFigure, 1, 'cold build no slower than skopeo + umoci'),
  )
  return [coldFigure, { what: 'template build, layers already stored', unit: 'ms', subject: summarize(warm), baseline }]
}

const dockerfile = `FROM ${baseTemplate}
ENV APP_HOME=/srv/app MODE=bench
WORKDIR /srv/app
COPY app/ ./
RUN echo "built in $MODE" > built.txt && ls -l > listing.txt
`

/** Row 3: a Dockerfile rebuild with every step cached, beside the same build with noCache. */
async function dockerfileRow(ctx: BenchContext, stack: BenchStack, n: number, notes: string[]): Promise<Figure> {
  const context = await mkdtemp(join(tmpdir(), 'sandstorm-bench-context-'))
  try {
    await writeFile(join(context, 'Dockerfile'), dockerfile)
    await mkdir(join(context, 'app'))
    for (let i = 0; i < 20; i++) await writeFile(join(context, 'app', `file-${i}.txt`), `file ${i}\n`.repeat(100))
    let misses = 0
    const build = async (noCache: boolean) => {
      const { ms } = await timed(() =>
        buildTemplate('bench-dockerfile', {
          ...stack.conn,
          context,
          dockerfile: 'Dockerfile',
          noCache,
          onEvent: (e: TemplateBuildEvent) => {
            if (!noCache && e.type === 'step' && e.cached === false) misses++
          },
        }),
      )
      return ms
    }
    const first = await build(false)
    misses = 0
    const cached: number[] = []
    const uncached: number[] = []
    for (let i = 0; i < n; i++) {
      checkAborted(ctx.signal)
      cached.push(await build(false))
      uncached.push(await build(true))
    }
    notes.push(
      `dockerfile: FROM the image template, ENV, WORKDIR, COPY of 20 small files, RUN; the first build (${first.toFixed(0)} ms) not counted; ${misses === 0 ? 'every timed rebuild was all cache hits' : `${misses} steps MISSED the cache in the timed rebuilds`}; no Docker engine to time docker build beside it`,
    )
    return { what: 'unchanged Dockerfile rebuild (all steps cached)', unit: 'ms', subject: summarize(cached), baseline: { what: 'the same build with noCache (every step runs)', summary: summarize(uncached) } }
  } finally {
    await deleteTemplate('bench-dockerfile', stack.conn).catch(() => undefined)
    await rm(context, { recursive: true, force: true })
  }
}

/** Row 4: create + kill from the image template beside create + kill from debian, interleaved. */
async function createRows(ctx: BenchContext, stack: BenchStack, n: number, notes: string[]): Promise<Figure[]> {
  const killFailures: string[] = []
  const once = async (template: string): Promise<{ create: number; total: number }> => {
    const started = performance.now()
    const sbx = await Sandbox.create(template, { ...stack.conn })
    const create = performance.now() - started
    stack.ids.add(sbx.sandboxId)
    await sbx.kill().catch((err: unknown) => killFailures.push(`${sbx.sandboxId}: ${err instanceof Error ? err.message : String(err)}`))
    return { create, total: performance.now() - started }
  }
  for (let i = 0; i < createWarmups; i++) {
    await once(baseTemplate)
    await once('debian')
  }
  const image = { create: [] as number[], total: [] as number[] }
  const debian = { create: [] as number[], total: [] as number[] }
  for (let i = 0; i < n; i++) {
    checkAborted(ctx.signal)
    // Alternating which goes first, so that neither always follows the other's kill.
    const order = i % 2 === 0 ? [baseTemplate, 'debian'] : ['debian', baseTemplate]
    for (const template of order) {
      const r = await once(template)
      const side = template === 'debian' ? debian : image
      side.create.push(r.create)
      side.total.push(r.total)
    }
  }
  const total: Figure = {
    what: 'create + kill from an image template',
    unit: 'ms',
    subject: summarize(image.total),
    baseline: { what: "create + kill from 'debian' (same stack, interleaved)", summary: summarize(debian.total) },
  }
  const create: Figure = {
    what: 'layer: Sandbox.create alone, image template',
    unit: 'ms',
    subject: summarize(image.create),
    baseline: { what: "Sandbox.create alone, 'debian'", summary: summarize(debian.create) },
  }
  notes.push(`create: ${createWarmups} warm-up pairs not counted`, ratioGoal(total, 1.1, 'image template create + kill within 10% of debian'))
  if (killFailures.length > 0) notes.push(`${killFailures.length} kills failed, e.g. ${killFailures[0]}`)
  return [total, create]
}

/** The images benchmark. */
export const imagesBenchmark: Benchmark = {
  name: 'images',
  title: 'templates from OCI images and Dockerfiles',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const notes: string[] = []
    const registry = await startRegistry()
    const templates = await scratchTemplatesDir()
    let stack: BenchStack | undefined
    try {
      ctx.progress('images: making and pushing the image')
      const image = await pushBenchImage(registry)
      stack = await startBenchStack({ templatesDir: templates.dir, insecureRegistries: [registry.host] })
      const figures = await buildRows(ctx, stack, templates.dir, image, ctx.iterations ?? buildIterations, notes)
      await buildTemplate(baseTemplate, { ...stack.conn, image: image.reference })
      figures.push(await dockerfileRow(ctx, stack, ctx.iterations ?? buildIterations, notes))
      figures.push(...(await createRows(ctx, stack, ctx.iterations ?? createIterations, notes)))
      await deleteTemplate(baseTemplate, stack.conn)
      // The noCache builds' layers are build cache no template stands on: a prune takes them.
      await pruneTemplateLayers(stack.conn)
      const left = await storedLayers(templates.dir)
      if (left.length > 0) ctx.leftovers([`${left.length} image layers in ${join(templates.dir, '.layers')} after every template was deleted`])
      return { name: 'images', title: this.title, figures, notes }
    } finally {
      if (stack) ctx.leftovers(await stack.close())
      await templates.remove()
      await registry.stop()
    }
  },
}
