import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { createVmJail, jailArgs, vmUidRange } from './vm-jail.js'

describe('the VM jail', () => {
  const dirs: string[] = []
  const fresh = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-jail-'))
    dirs.push(dir)
    return dir
  }
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true })
  })

  it('claims uids in its range, each once, until given back; a later jail on the same dir sees the claims', async () => {
    const dir = await fresh()
    const jail = await createVmJail(dir)
    const uids = await Promise.all(Array.from({ length: 50 }, () => jail.claim()))
    assert.equal(new Set(uids).size, 50)
    for (const uid of uids) assert.ok(uid >= vmUidRange.first && uid < vmUidRange.first + vmUidRange.count)
    const later = await createVmJail(dir)
    assert.deepEqual((await readdir(join(dir, 'uids'))).sort(), uids.map(String).sort(), 'the claims are files under <dir>/uids')
    await later.release(uids[0]!)
    await jail.release(uids[0]!)
    assert.equal((await readdir(join(dir, 'uids'))).length, 49)
  })

  it('makes the root empty and searchable only, and refuses one that holds anything', async () => {
    const dir = await fresh()
    const jail = await createVmJail(dir)
    assert.equal((await stat(jail.root)).mode & 0o777, 0o111)
    assert.deepEqual(jailArgs(2_000_000_123, jail.root), ['-runas', '2000000123:2000000123', '-chroot', jail.root])
    // In the words of the QEMU installed: 7.2's, 8.1's (chroot moved under -run-with), 10's (both did).
    const v72 = '-chroot dir     chroot to dir just before starting the VM\n-runas user     change to user id user just before starting the VM\n'
    const v81 = '-runas user     change to user id user just before starting the VM\n-run-with [async-teardown=on|off][,chroot=dir]\n'
    const v10 = '-run-with [async-teardown=on|off][,chroot=dir][user=username|uid:gid]\n'
    assert.deepEqual(jailArgs(7, '/j', v72), ['-runas', '7:7', '-chroot', '/j'])
    assert.deepEqual(jailArgs(7, '/j', v81), ['-runas', '7:7', '-run-with', 'chroot=/j'])
    assert.deepEqual(jailArgs(7, '/j', v10), ['-run-with', 'user=7:7,chroot=/j'])
    const dirty = await fresh()
    await mkdir(join(dirty, 'jail'))
    await writeFile(join(dirty, 'jail', 'sh'), '')
    await assert.rejects(createVmJail(dirty), /jail .* is not empty/)
  })
})
