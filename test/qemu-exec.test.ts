/**
 * A command in a qemu guest, past the backend contract: its output files are opened by the host
 * before it runs and polled by handle, so what it writes just before it exits all arrives, even
 * past one read; no file of any command stays in the guest; a missing cwd says so; a process it
 * leaves behind holding its output does not hold its exit.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createQemuBackend, type ExecSpec, type QemuBackend } from '../src/runtime/index.js'
import { newId } from '../src/shared/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { skipReason, templatesDir } from './helpers/stack.js'

function qemuSkipReason(): string | false {
  const reason = skipReason()
  if (reason) return reason
  if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86 is not installed: run scripts/setup.sh'
  return false
}

const qemuDir = join(process.env.SANDSTORM_DATA_DIR ?? '/var/lib/sandstorm', 'qemu')

describe('commands in a qemu guest', { skip: qemuSkipReason(), timeout: 5 * 60_000 }, () => {
  let backend: QemuBackend
  const id = newId('sb')

  before(async () => {
    const template = await createTemplateStore({ dir: templatesDir }).resolve('debian')
    backend = createQemuBackend({ dir: qemuDir })
    await backend.create({ id, rootfs: template.rootfs, memoryMiB: 256, cpus: 1, pidsMax: 256, env: {}, hostname: 'sandbox', network: { mode: 'none' } })
  })

  after(async () => {
    await backend?.destroy(id).catch(() => undefined)
    await backend?.close()
  })

  async function run(script: string, extra: Partial<ExecSpec> = {}) {
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    const proc = await backend.exec(
      id,
      { argv: ['/bin/sh', '-c', script], env: {}, cwd: '/', uid: 0, gid: 0, ...extra },
      { onStdout: (c) => void stdout.push(Buffer.from(c)), onStderr: (c) => void stderr.push(Buffer.from(c)) },
    )
    const result = await proc.result
    return { stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString(), result }
  }

  it('hears all a command wrote right before it exited, on both streams, past one read of the file', async () => {
    // 3 MB is three reads of the host's 1 MiB chunk; the command exits the moment it is written.
    const { stdout, stderr, result } = await run("head -c 3000000 /dev/zero | tr '\\0' a; echo end; echo last-words >&2; exit 5")
    assert.equal(result.exitCode, 5)
    assert.equal(stdout.length, 3_000_004)
    assert.match(stdout, /^a+end\n$/)
    assert.equal(stderr, 'last-words\n')
  })

  it('leaves no output file in the guest, and a running command\'s files have no name another process could open', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await run(`echo ${i}`)).stdout, `${i}\n`)
    // The listing runs as a command too: its own files are gone by the time it looks.
    const { stdout, result } = await run('ls -a /run/sandstorm; echo; ls -l /proc/$$/fd/1 /proc/$$/fd/2')
    assert.equal(result.exitCode, 0)
    const [listing, fds] = stdout.split('\n\n')
    assert.doesNotMatch(listing!, /exec-/)
    // stdout and stderr are the files the host reads, unlinked.
    assert.equal(fds!.match(/\/run\/sandstorm\/exec-[0-9a-f]+\.(out|err) \(deleted\)/g)?.length, 2, fds)
  })

  it('says that a missing working directory is missing, with exit 127', async () => {
    const { stdout, stderr, result } = await run('echo never', { cwd: '/no/such/dir' })
    assert.equal(result.exitCode, 127)
    assert.equal(stdout, '')
    assert.equal(stderr, 'cwd /no/such/dir does not exist\n')
  })

  it('ends a command when it exits, though a process it left behind still holds its output', async () => {
    const { stdout, result } = await run('sleep 600 & echo started')
    assert.equal(result.exitCode, 0)
    assert.equal(stdout, 'started\n')
    const { stdout: ps } = await run('for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr "\\0" " "; echo; done')
    assert.match(ps, /sleep 600/)
  })

  // Last: it destroys the VM the cases above share.
  it('fails a command whose VM is destroyed under it, with no rejection left unhandled', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (err: unknown) => void unhandled.push(err)
    process.on('unhandledRejection', onUnhandled)
    try {
      let out = ''
      const started = new Promise<void>((resolve) => {
        const proc = backend.exec(
          id,
          { argv: ['/bin/sh', '-c', 'echo started; exec sleep 600'], env: {}, cwd: '/', uid: 0, gid: 0 },
          { onStdout: (c) => ((out += Buffer.from(c).toString()), out.includes('started') && resolve()), onStderr: () => undefined },
        )
        void proc.then((p) => (running = p))
      })
      let running: Awaited<ReturnType<QemuBackend['exec']>> | undefined
      await started
      // Polls go on every 20 ms, each a status and two reads: the destroy closes the channel under one.
      await new Promise((r) => setTimeout(r, 300))
      // Heard before the destroy, as the agent hears every result.
      const failed = assert.rejects(running!.result)
      await backend.destroy(id)
      await failed
      await new Promise((r) => setTimeout(r, 200))
      assert.deepEqual(unhandled, [])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})

