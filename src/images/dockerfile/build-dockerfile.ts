/**
 * Builds a Dockerfile on a BuildHost: FROM an image or a template, then each step as a layer of
 * the image layer store under its cache key (a stored key skips the step), RUN in a build sandbox,
 * COPY/ADD and a WORKDIR that must make its directory written here. Everything is parsed and
 * refused before anything runs; a failing step leaves only the complete layers of the steps before
 * it (cache entries), never a half-made one.
 */
import { randomBytes } from 'node:crypto'
import { BuildStepFailed, OutputTail, SandstormError, templateNameSchema } from '../../shared/index.js'
import type { AgentNetwork, CallOptions, EgressPolicy, TemplateBuildEvent } from '../../shared/index.js'
import type { BuildHost, Digest, DockerfileBuildResult, ImageDefaults, LayerChain, PullOptions, StoredLayer } from '../contracts.js'
import { fromCacheKey, stepCacheKey } from './cache-key.js'
import { lookupInChain } from './chain-fs.js'
import { resolveOwner, type Owner } from './chain-users.js'
import { resolveSources } from './context-sources.js'
import { copyIntoLayer, ensureLayerDir } from './copy-into-layer.js'
import { loadDockerignore } from './dockerignore.js'
import { parseDockerfile } from './parse-dockerfile.js'
import { planDockerfile, type PlannedStep } from './plan-steps.js'

/** Options of buildDockerfile. */
export interface BuildDockerfileOptions extends CallOptions {
  /** The Dockerfile's text. */
  dockerfile: string
  /** The build context, unpacked (owned by the caller, untrusted, read only). */
  contextDir: string
  /** `--build-arg` values. @default none */
  buildArgs?: Record<string, string>
  host: BuildHost
  /** What RUN steps may reach (the server's default egress policy); a step with `--network=none` has no network. */
  egress: EgressPolicy
  /** Each build event as it happens (step, progress, stdout/stderr, step_end). @default none */
  onEvent?: (event: TemplateBuildEvent) => void
  /** Runs every step again instead of looking it up in the build cache. @default false */
  noCache?: boolean
  /** Credentials and registries for a FROM image. @default none */
  pull?: Omit<PullOptions, 'signal' | 'timeoutMs' | 'onProgress'>
}

const root: Owner = { uid: 0, gid: 0 }

/** Builds `options.dockerfile`; throws `invalid_argument` before running anything for what it does not support, BuildStepFailed for a failing RUN. */
export async function buildDockerfile(options: BuildDockerfileOptions): Promise<DockerfileBuildResult> {
  const { host, contextDir, signal, noCache = false } = options
  const buildArgs = options.buildArgs ?? {}
  const emit = options.onEvent ?? (() => {})
  const parsed = parseDockerfile(options.dockerfile, buildArgs)
  const filter = await loadDockerignore(contextDir)
  const count = parsed.instructionCount

  for (const g of parsed.globalArgs) {
    emit({ type: 'step', index: g.index, cmd: g.text })
    emit({ type: 'step_end', index: g.index, exitCode: 0 })
  }
  emit({ type: 'step', index: parsed.from.index, cmd: parsed.from.text })
  const base = await resolveFrom(parsed.from.image, parsed.from.line, host, emit, { ...options.pull, ...(signal && { signal }) })
  emit({ type: 'step_end', index: parsed.from.index, exitCode: 0 })

  const plan = planDockerfile(parsed, base.defaults, buildArgs)
  if (plan.unusedBuildArgs.length > 0) emit({ type: 'progress', message: `build args not declared by any ARG (unused): ${plan.unusedBuildArgs.join(', ')}` })

  let chain: LayerChain = { ...base.chain, lowerDirs: [...base.chain.lowerDirs], layerIds: [...base.chain.layerIds] }
  // A template's version number comes again after a delete: when it was built tells the two apart.
  let key = fromCacheKey('image' in base.from ? base.from : { ...base.from, layerIds: base.chain.layerIds, builtAt: base.builtAt ?? '' })
  let cachedSteps = 0
  const extend = (layer: StoredLayer): void => {
    chain = { ...chain, lowerDirs: [layer.dir, ...chain.lowerDirs], layerIds: [layer.id, ...chain.layerIds] }
    key = layer.id
  }
  /** The stored layer of `stepKey`, or null when it must be made (always, with noCache). */
  const cached = async (stepKey: Digest): Promise<StoredLayer | null> => (noCache ? null : host.layers.get(stepKey))

  for (const step of plan.steps.slice(parsed.globalArgs.length + 1)) {
    signal?.throwIfAborted()
    const where = `Dockerfile line ${step.line} (${step.text.split(' ')[0]})`
    const layerStep = step.kind === 'workdir' ? await workdirToMake(chain, step) : step.kind !== 'meta'
    if (!layerStep) {
      emit({ type: 'step', index: step.index, cmd: step.text })
      emit({ type: 'step_end', index: step.index, exitCode: 0 })
      continue
    }
    let stepKey: Digest
    let make: () => Promise<StoredLayer>
    if (step.kind === 'run') {
      // A re-run of a step whose output may differ must not be stored under the old step's key.
      stepKey = stepCacheKey(key, 'RUN', { argv: step.argv, env: step.env, cwd: step.cwd, user: step.user, network: step.network, ...(noCache && { nonce: randomBytes(16).toString('hex') }) })
      make = () => runStep(step, stepKey)
    } else if (step.kind === 'copy') {
      const sources = await resolveSources(contextDir, step.sources, filter, where)
      stepKey = stepCacheKey(key, step.add ? 'ADD' : 'COPY', { sources: sources.digest, dest: step.dest, chown: step.chown, chmod: step.chmod })
      const lowerDirs = chain.lowerDirs
      make = async () => {
        const owner = step.chown === undefined ? root : await resolveOwner(lowerDirs, step.chown)
        const copy = { lowerDirs, contextDir, sources, dest: step.dest, owner, extractArchives: step.add, where, ...(step.chmod !== undefined && { chmod: step.chmod }), ...(host.maxLayerBytes && { maxLayerBytes: host.maxLayerBytes }), ...(signal && { signal }) }
        return host.layers.create(stepKey, (layerDir, roomBytes, roomFiles) => copyIntoLayer({ ...copy, layerDir, roomBytes, roomFiles }), { ...(signal && { signal }) })
      }
    } else {
      const { path, user } = step as Extract<PlannedStep, { kind: 'workdir' }>
      stepKey = stepCacheKey(key, 'WORKDIR', { path, user })
      const lowerDirs = chain.lowerDirs
      make = async () => {
        // Made owned by USER, as BuildKit does, so a later RUN as that user can write there.
        const owner = user === 'root' ? root : await resolveOwner(lowerDirs, user, { primaryGroup: true })
        return host.layers.create(stepKey, async (layerDir) => void (await ensureLayerDir(layerDir, lowerDirs, path, owner)), { ...(signal && { signal }) })
      }
    }
    const hit = await cached(stepKey)
    emit({ type: 'step', index: step.index, cmd: step.text, cached: hit !== null })
    if (hit) cachedSteps++
    extend(hit ?? (await make()))
    emit({ type: 'step_end', index: step.index, exitCode: 0 })
  }
  return { chain, defaults: plan.defaults, from: base.from, steps: count, cachedSteps }

  async function runStep(step: Extract<PlannedStep, { kind: 'run' }>, stepKey: Digest): Promise<StoredLayer> {
    const output = new OutputTail()
    const network: AgentNetwork = step.network ? { mode: 'veth', egress: options.egress } : { mode: 'none' }
    const run = await host.run(
      { chain, argv: step.argv, env: step.env, cwd: step.cwd, user: step.user, network },
      (stream, data) => {
        emit({ type: stream, index: step.index, data: Buffer.from(data).toString('base64') })
        output.push(data)
      },
      { ...(signal && { signal }) },
    )
    try {
      signal?.throwIfAborted()
      if (run.exitCode !== 0) {
        emit({ type: 'step_end', index: step.index, exitCode: run.exitCode })
        throw new BuildStepFailed({ index: step.index, cmd: step.text, exitCode: run.exitCode, output: output.text() }, count)
      }
      return await run.commit(stepKey)
    } finally {
      await run.dispose()
    }
  }
}

/** Does WORKDIR `path` need a layer (the chain has no directory there)? */
async function workdirToMake(chain: LayerChain, step: PlannedStep): Promise<boolean> {
  if (step.kind !== 'workdir') return false
  const { entry } = await lookupInChain(chain.lowerDirs, step.path, { followLast: true })
  return !entry?.stat.isDirectory()
}

/** What FROM gives: a template built on this host, or an image. */
interface FromBase {
  chain: LayerChain
  defaults: ImageDefaults
  from: DockerfileBuildResult['from']
  /** A template's: when its version was built. */
  builtAt?: string
}

/**
 * FROM `name`: a template of this host when `name` could be a template name (no `/`, `:` or `@`,
 * lowercase) and there is one; an image otherwise (`debian` with no such template pulls
 * docker.io/library/debian:latest).
 */
async function resolveFrom(name: string, line: number, host: BuildHost, emit: (e: TemplateBuildEvent) => void, pull: PullOptions): Promise<FromBase> {
  if (name === 'scratch') throw new SandstormError('invalid_argument', `Dockerfile line ${line} (FROM): FROM scratch is not supported; expected an image or a template`)
  let templateMiss: SandstormError | undefined
  if (templateNameSchema.safeParse(name).success) {
    try {
      const t = await host.template(name, { ...(pull.signal && { signal: pull.signal }) })
      emit({ type: 'progress', message: `FROM template ${name} (version ${t.version})` })
      return { chain: t.chain, defaults: t.defaults, from: { template: name, version: t.version }, builtAt: t.builtAt }
    } catch (error) {
      if (!(error instanceof SandstormError) || error.code !== 'not_found') throw error
      templateMiss = error
    }
  }
  try {
    const image = await host.pull(name, { ...pull, onProgress: (message) => emit({ type: 'progress', message }) })
    return { chain: image.chain, defaults: image.defaults, from: { image: name, digest: image.digest } }
  } catch (error) {
    if (!templateMiss) throw error
    const e = SandstormError.from(error)
    throw new SandstormError(e.code === 'not_found' ? 'not_found' : e.code, `Dockerfile line ${line} (FROM ${name}): ${templateMiss.message}; and as an image: ${e.expose ? e.message : 'it could not be pulled'}`, { cause: error, expose: true })
  }
}
