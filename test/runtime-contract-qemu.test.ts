/** The backend contract on QEMU microVMs (TCG here), over the debian template that setup built. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { runBackendContract } from '../src/runtime/contract.js'
import { createQemuBackend, noGuestTerminals } from '../src/runtime/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { skipReason, templatesDir } from './helpers/stack.js'

/** The guest is built once and cached beside the templates, as setup does. */
const qemuDir = join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'qemu')

runBackendContract(
  'qemu',
  async () => {
    const reason = skipReason()
    if (reason) return reason
    if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86 is not installed: run scripts/setup.sh'
    const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
    const backend = createQemuBackend({ dir: qemuDir })
    return {
      backend,
      spec: (id) => ({ id, rootfs: template.rootfs, memoryMiB: 256, cpus: 1, pidsMax: 256, env: { SANDBOX_ENV: '1' }, hostname: 'sandbox', network: { mode: 'none' } }),
      leftovers: async (id) =>
        [join(qemuDir, 'vms', id), `/dev/shm/sandstorm-qemu/${id}.ram`, ...['memory', 'cpu', 'cpuacct', 'pids'].map((c) => `/sys/fs/cgroup/${c}/sandstorm/${id}`)].filter((p) =>
          existsSync(p),
        ),
    }
  },
  {
    skip: {
      'exec feeds stdin': 'the guest agent takes a command\'s input only when it starts (guest-exec input-data), not as a stream',
      // Terminals need a stream of input (what is typed, resizes): the same limit as stdin.
      'pty: the command runs on a terminal of the size given': noGuestTerminals,
      'pty: a resize shows in stty size and fires a WINCH trap': noGuestTerminals,
      'pty: Ctrl-C stops a foreground command in a shell that goes on': noGuestTerminals,
      'pty: Ctrl-D ends cat': noGuestTerminals,
      'pty: a killed command leaves no process and no terminal': noGuestTerminals,
      'pty: a command of another user owns its terminal': noGuestTerminals,
    },
  },
)
