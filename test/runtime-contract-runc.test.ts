/** The backend contract on runc, over the debian template that setup built. */
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runBackendContract } from '../src/runtime/contract.js'
import { createRuncBackend, type RootfsSpec, type RuntimeBackend, type SandboxSpec } from '../src/runtime/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { leftoversOf } from './helpers/leftovers.js'
import { skipReason, templatesDir } from './helpers/stack.js'

/** A sandbox of the contract: small, no network. */
const specOf = (id: string, rootfs: RootfsSpec): SandboxSpec => ({ id, rootfs, memoryMiB: 256, cpus: 1, pidsMax: 256, env: { SANDBOX_ENV: '1' }, hostname: 'sandbox', network: { mode: 'none' } })

runBackendContract('runc', async () => {
  const reason = skipReason()
  if (reason) return reason
  const dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-contract-runc-'))
  const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
  const backend = createRuncBackend({ stateRoot: join(dataDir, 'runc'), sandboxesDir: join(dataDir, 'sandboxes') })
  return {
    backend,
    spec: (id) => specOf(id, template.rootfs),
    leftovers: (id) => leftoversOf(dataDir, id),
    close: () => rm(dataDir, { recursive: true, force: true }),
  }
})

// The same contract on sandboxes whose root was switched in place right after their start (what
// a restore and a fork from a pool do): a fresh upper over the template, by the backend's renew.
runBackendContract('runc, root switched in place', async () => {
  const reason = skipReason()
  if (reason) return reason
  const dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-contract-renewed-'))
  const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
  const backend = createRuncBackend({ stateRoot: join(dataDir, 'runc'), sandboxesDir: join(dataDir, 'sandboxes') })
  const layerOf = (id: string) => join(dataDir, 'renewed', id)
  const renewed: RuntimeBackend = Object.create(backend) as RuntimeBackend
  renewed.create = async (spec, call) => {
    const made = await backend.create(spec, call)
    const dir = layerOf(spec.id)
    await mkdir(join(dir, 'upper'), { recursive: true })
    await mkdir(join(dir, 'work'), { recursive: true })
    await backend.renew!(spec.id, { ...spec.rootfs, upperDir: join(dir, 'upper'), workDir: join(dir, 'work') }, spec.env, 'snap-contract')
    return made
  }
  renewed.destroy = async (id, call) => {
    await backend.destroy(id, call)
    await rm(layerOf(id), { recursive: true, force: true })
  }
  return {
    backend: renewed,
    spec: (id) => specOf(id, template.rootfs),
    leftovers: async (id) => [...(await leftoversOf(dataDir, id)), ...(existsSync(layerOf(id)) ? [`path ${layerOf(id)}`] : [])],
    close: () => rm(dataDir, { recursive: true, force: true }),
  }
})
