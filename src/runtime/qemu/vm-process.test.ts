import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { newId, silentLogger, startTicksOf } from '../../shared/index.js'
import { createQemuBackend } from './backend.js'
import { vmFiles } from './qemu-args.js'
import { recordQemuProcess } from './vm-process.js'

/**
 * A VM's directory outlives its QEMU (a crash, a host reboot), and its pid file then names a pid
 * that may be any process's. These stand a `sleep` in for that process.
 */
describe('a QEMU pid file that outlived its QEMU', () => {
  const root = mkdtempSync(join(tmpdir(), 'sandstorm-vmpid-'))
  const backend = createQemuBackend({ dir: root, memoryDir: join(root, 'memory'), accel: 'tcg', sparesPerMachine: 0, logger: silentLogger() })
  const bystanders: ChildProcess[] = []
  after(async () => {
    for (const p of bystanders) p.kill('SIGKILL')
    await backend.close()
    rmSync(root, { recursive: true, force: true })
  })

  /** A VM directory whose pid file names a running `sleep`, as a reused pid would. */
  function vmDirNaming() {
    const bystander = spawn('sleep', ['600'], { stdio: 'ignore' })
    bystanders.push(bystander)
    const id = newId('sbx')
    const dir = join(root, 'vms', id)
    mkdirSync(dir, { recursive: true })
    const files = vmFiles(dir)
    writeFileSync(files.pid, `${bystander.pid}\n`)
    return { id, dir, files, pid: bystander.pid! }
  }

  it('a destroy leaves the process now at that pid alone, and removes the VM', async () => {
    for (const identity of ['none', 'other'] as const) {
      const vm = vmDirNaming()
      // A QEMU of an earlier boot (or an earlier start) recorded its own identity.
      if (identity === 'other') writeFileSync(vm.files.started, '00000000-0000-0000-0000-000000000000 12345\n')
      assert.equal((await backend.list()).find((s) => s.id === vm.id)?.status, 'stopped', identity)
      await backend.destroy(vm.id)
      // A killed bystander stays a zombie until reaped: only its start time says it still runs.
      assert.notEqual(startTicksOf(vm.pid), null, `identity ${identity}: the bystander was killed`)
      assert.deepEqual((await backend.list()).filter((s) => s.id === vm.id), [])
    }
  })

  it('a destroy still stops the process the pid file and its identity name', async () => {
    const vm = vmDirNaming()
    await recordQemuProcess(vm.files.pid, vm.files.started)
    assert.equal((await backend.list()).find((s) => s.id === vm.id)?.status, 'running')
    const exited = once(bystanders.at(-1)!, 'exit')
    await backend.destroy(vm.id)
    assert.deepEqual(await exited, [null, 'SIGKILL'])
    assert.deepEqual((await backend.list()).filter((s) => s.id === vm.id), [])
  })
})
