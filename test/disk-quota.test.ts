/**
 * Disk quotas of runc sandboxes, tested by filling them: a sandbox that writes past its quota gets
 * ENOSPC inside and the host's disk gives up at most the quota; metrics report the use; snapshots,
 * forks and pools keep the quota; a full sandbox disturbs no other; a destroyed one leaves no image,
 * mount or loop device; a bad quota is a 400 naming the field.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Sandbox, SandstormSdkError } from '@sandstorm/sdk'
import { leftoversOf, loopDevicesUnder } from './helpers/leftovers.js'
import { sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false
const MiB = 1024 * 1024

/** KiB the host's filesystem has allocated under a dir (the sandboxes' disk images; not what is mounted on them). */
function allocatedKiB(dir: string): number {
  return Number(execFileSync('du', ['-skx', dir], { encoding: 'utf8' }).split('\t')[0])
}

describe('disk quotas', { skip, timeout: 300_000 }, () => {
  let stack: Stack
  let writable: string

  before(async () => {
    stack = await startStack()
    writable = join(stack.dataDir, 'storage', 'writable')
  })
  after(async () => {
    await stack?.close()
  })

  it('a write past the quota fails with ENOSPC inside; the host gives up at most the quota', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, diskMiB: 96 })
    try {
      assert.equal((await sbx.getInfo()).diskMiB, 96)
      const before = allocatedKiB(writable)
      const r = await sh(sbx, 'dd if=/dev/urandom of=/big bs=1M count=200 2>&1; echo "exit $?"; sync', { timeoutMs: 120_000 })
      assert.match(r.stdout, /No space left on device/)
      assert.match(r.stdout, /exit 1/)
      const grewKiB = allocatedKiB(writable) - before
      assert.ok(grewKiB <= 96 * 1024, `the host gave up ${grewKiB} KiB for a 96 MiB quota`)
      assert.ok(grewKiB >= 48 * 1024, `expected the write to reach the host's disk, it grew ${grewKiB} KiB`)

      const m = await sbx.getUsage()
      assert.ok(m.diskUsedBytes >= 64 * MiB && m.diskUsedBytes <= 96 * MiB, `diskUsedBytes ${m.diskUsedBytes}`)
      assert.ok(m.diskLimitBytes > 80 * MiB && m.diskLimitBytes <= 96 * MiB, `diskLimitBytes ${m.diskLimitBytes}`)

      // A full disk is the sandbox's alone: it works again once it frees space, and others write on.
      const other = await Sandbox.create('debian', { ...stack.conn, diskMiB: 96 })
      try {
        assert.equal((await sh(other, 'head -c 32M /dev/zero > /f && echo ok')).stdout, 'ok\n')
      } finally {
        await other.kill()
      }
      assert.equal((await sh(sbx, 'rm /big && echo freed > /small && cat /small')).stdout, 'freed\n')
    } finally {
      await sbx.kill()
    }
    assert.deepEqual(await leftoversOf(stack.dataDir, sbx.sandboxId), [])
    assert.deepEqual(await loopDevicesUnder(stack.dataDir), [])
  })

  it('a snapshot keeps the quota: forks get it, and pay only for what they write', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, diskMiB: 80 })
    const forks: Sandbox[] = []
    try {
      await sh(sbx, 'head -c 40M /dev/urandom > /kept && sync')
      const snap = await sbx.snapshot()
      assert.equal(snap.diskMiB, 80)
      forks.push(...(await Sandbox.fork(snap.id, { ...stack.conn, count: 2 })))
      for (const fork of forks) {
        assert.equal((await fork.getInfo()).diskMiB, 80)
        // The snapshot's 40 MiB are below the fork's own layer: it still has room for 60.
        assert.equal((await sh(fork, 'head -c 60M /dev/zero > /more && stat -c %s /kept')).stdout, `${40 * MiB}\n`)
        const over = await sh(fork, '{ head -c 40M /dev/zero > /over; } 2>&1; echo "exit $?"')
        assert.match(over.stdout, /No space left on device[\s\S]*exit 1/)
      }
    } finally {
      for (const fork of forks) await fork.kill()
      await sbx.kill()
    }
  })

  it('the server default applies when neither the create nor the template names one', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn })
    try {
      assert.equal((await sbx.getInfo()).diskMiB, 2048)
      const df = await sh(sbx, "df -Pm / | awk 'NR==2 {print $2}'")
      const sizeMiB = Number(df.stdout.trim())
      assert.ok(sizeMiB > 1800 && sizeMiB <= 2048, `df says the root holds ${sizeMiB} MiB`)
    } finally {
      await sbx.kill()
    }
  })

  it('a malformed quota is a 400 naming diskMiB, and nothing is made', async () => {
    for (const diskMiB of [0, 10, -5, 1.5, 2 ** 40]) {
      const err = await Sandbox.create('debian', { ...stack.conn, diskMiB }).then(
        () => assert.fail(`diskMiB ${diskMiB} was accepted`),
        (e: unknown) => e,
      )
      assert.ok(err instanceof SandstormSdkError)
      assert.equal(err.code, 'invalid_argument')
      assert.match(err.message, /diskMiB/)
    }
    assert.deepEqual(await Sandbox.list({ ...stack.conn }), [])
    assert.deepEqual(await loopDevicesUnder(stack.dataDir), [])
  })
})
