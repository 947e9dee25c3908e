/** The backend contract on QEMU microVMs (TCG here), over the debian template that setup built. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { runBackendContract } from '../src/runtime/contract.js'
import { createQemuBackend } from '../src/runtime/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { skipReason, templatesDir } from './helpers/stack.js'

/** The guest is built once and cached beside the templates, as setup does. */
const qemuDir = join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'qemu')

runBackendContract(
  'qemu',
  async () => {
    const reason = skipReason()
    if (reason) return reason
    // Opt-in until the guest boots reliably under TCG on a loaded host: the Debian kernel
    // intermittently stalls at timer calibration (timestamps stay at 0.000000).
    if (!process.env.SANDSTORM_QEMU_TESTS) return 'qemu contract is opt-in (SANDSTORM_QEMU_TESTS=1): guest boots under TCG stall intermittently at timer calibration here'
    if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86 is not installed: run scripts/setup.sh'
    const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
    const backend = createQemuBackend({ dir: qemuDir })
    return {
      backend,
      spec: (id) => ({ id, rootfs: template.rootfs, memoryMiB: 256, cpus: 1, pidsMax: 256, env: { SANDBOX_ENV: '1' }, hostname: 'sandbox', network: 'none' }),
      leftovers: async (id) => [join(qemuDir, 'vms', id)].filter((p) => existsSync(p)),
    }
  },
  {
    skip: {
      'exec feeds stdin': 'the guest agent takes a command\'s input only when it starts (guest-exec input-data), not as a stream',
    },
  },
)
