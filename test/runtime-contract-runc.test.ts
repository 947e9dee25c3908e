/** The backend contract on runc, over the debian template that setup built. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runBackendContract } from '../src/runtime/contract.js'
import { createRuncBackend } from '../src/runtime/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { leftoversOf } from './helpers/leftovers.js'
import { skipReason, templatesDir } from './helpers/stack.js'

runBackendContract('runc', async () => {
  const reason = skipReason()
  if (reason) return reason
  const dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-contract-runc-'))
  const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
  const backend = createRuncBackend({ stateRoot: join(dataDir, 'runc'), sandboxesDir: join(dataDir, 'sandboxes') })
  return {
    backend,
    spec: (id) => ({ id, rootfs: template.rootfs, memoryMiB: 256, cpus: 1, pidsMax: 256, env: { SANDBOX_ENV: '1' }, hostname: 'sandbox', network: { mode: 'none' } }),
    leftovers: (id) => leftoversOf(dataDir, id),
    close: () => rm(dataDir, { recursive: true, force: true }),
  }
})
