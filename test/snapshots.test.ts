/**
 * Snapshots, forks and restores end to end through the SDK: real server, agent, runc and overlay
 * mounts over the debian template.
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { ConflictError, deleteSnapshot, listSnapshots, NotFoundError, Sandbox } from '@sandstorm/sdk'
import { until } from './helpers/until.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false

describe('snapshots, forks and restores', { skip }, () => {
  let stack: Stack
  const sh = async (sb: Sandbox, cmd: string) => {
    const result = await sb.commands.run(cmd, { ...stack.conn })
    assert.equal(result.exitCode, 0, `${cmd}: ${result.stderr}`)
    return result.stdout
  }

  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('keeps a sandbox running through its snapshot, background processes and all', async () => {
    const sb = await Sandbox.create('debian', { ...stack.conn })
    const counter = await sb.commands.run('i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.01; done', { ...stack.conn, background: true })
    await sh(sb, 'while [ ! -s /tmp/count ]; do sleep 0.01; done')
    const snap = await sb.snapshot({ ...stack.conn, label: 'running' })
    assert.equal(snap.label, 'running')
    assert.equal((await sb.getInfo(stack.conn)).state, 'running')
    // The loop's echo empties the file before it writes: an empty read is read again, never taken as a number.
    const before = Number(await sh(sb, 'while c=$(cat /tmp/count); [ -z "$c" ]; do sleep 0.01; done; echo $c'))
    assert.ok(before > 0)
    // The loop still counts after the thaw.
    await sh(sb, `while c=$(cat /tmp/count); [ -z "$c" ] || [ "$c" -le ${before} ]; do sleep 0.01; done`)
    const listed = (await sb.commands.list(stack.conn)).find((p) => p.pid === counter.pid)
    assert.equal(listed?.running, true)
    await sb.kill(stack.conn)
  })

  it('gives forks the snapshot files and deletions, and keeps forks apart', async () => {
    const sb = await Sandbox.create('debian', { ...stack.conn, env: { FROM_PARENT: 'yes' } })
    await sh(sb, 'mkdir -p /work && echo base > /work/a.txt && rm /etc/debian_version && rm -rf /usr/share/doc && mkdir /usr/share/doc && echo mine > /usr/share/doc/only')
    const snap = await sb.snapshot(stack.conn)
    await sh(sb, 'echo after-snapshot > /work/a.txt')
    const forks = await Sandbox.fork(snap.id, { ...stack.conn, count: 3 })
    assert.equal(forks.length, 3)
    assert.equal(new Set(forks.map((f) => f.sandboxId)).size, 3)
    for (const f of forks) {
      assert.equal(await sh(f, 'cat /work/a.txt'), 'base\n')
      assert.equal(await sh(f, 'test -e /etc/debian_version && echo present || echo deleted'), 'deleted\n')
      assert.equal(await sh(f, 'ls /usr/share/doc'), 'only\n')
      assert.equal(await sh(f, 'echo $FROM_PARENT'), 'yes\n')
    }
    await sh(forks[0]!, 'echo fork0 > /work/a.txt && echo x > /work/fork0-only')
    assert.equal(await sh(forks[1]!, 'cat /work/a.txt; ls /work'), 'base\na.txt\n')
    assert.equal(await sh(sb, 'cat /work/a.txt'), 'after-snapshot\n')
    for (const f of [sb, ...forks]) await f.kill(stack.conn)
  })

  it('restores a sandbox to a snapshot under the same id', async () => {
    const sb = await Sandbox.create('debian', { ...stack.conn })
    await sh(sb, 'echo one > /state')
    const one = await sb.snapshot(stack.conn)
    await sh(sb, 'echo two > /state && touch /extra')
    const two = await sb.snapshot(stack.conn)
    assert.equal(two.parentId, null)
    await sb.restore(one.id, stack.conn)
    assert.equal(await sh(sb, 'cat /state; ls /extra 2>/dev/null || echo none'), 'one\nnone\n')
    // A snapshot of a restored sandbox stands on the snapshot it was restored to.
    await sh(sb, 'echo three > /state')
    const three = await sb.snapshot(stack.conn)
    assert.equal(three.parentId, one.id)
    await sb.restore(two.id, stack.conn)
    assert.equal(await sh(sb, 'cat /state'), 'two\n')
    await sb.kill(stack.conn)
  })

  it('restores in place: the same container on a new layer, the old layer removed, and a restarted agent adopts it', async () => {
    const sb = await Sandbox.create('debian', { ...stack.conn })
    await sh(sb, 'echo kept > /state')
    const snap = await sb.snapshot(stack.conn)
    const runcState = JSON.parse(await readFile(join(stack.dataDir, 'runc', sb.sandboxId, 'state.json'), 'utf8')) as { init_process_pid: number }
    const old = await sb.commands.run('sleep 1000', { ...stack.conn, background: true })
    const writable = join(stack.dataDir, 'storage', 'writable', sb.sandboxId)
    const upperBefore = (await stat(join(writable, 'upper'))).ino
    await sb.restore(snap.id, stack.conn)
    // The command the restore ended is listed as ended (a late wait hears why).
    assert.ok(!(await sb.commands.list(stack.conn)).some((p) => p.pid === old.pid && p.running))
    // The container and its init are the ones it had; its layer is a new one, and the old one goes.
    const after = JSON.parse(await readFile(join(stack.dataDir, 'runc', sb.sandboxId, 'state.json'), 'utf8')) as { init_process_pid: number }
    assert.equal(after.init_process_pid, runcState.init_process_pid)
    // The new upper dir took the old one's place in the sandbox's writable dir (and disk), and the old one is removed.
    assert.notEqual((await stat(join(writable, 'upper'))).ino, upperBefore)
    await until('the replaced upper dir is removed', async () => (await readdir(writable)).filter((n) => n !== 'lost+found').sort().join() === 'upper,work')
    await sh(sb, 'echo after > /later')
    await stack.stop()
    stack = await stack.restart()
    assert.equal(await sh(sb, 'cat /state /later'), 'kept\nafter\n')
    await sb.restore(snap.id, stack.conn)
    assert.equal(await sh(sb, 'cat /state; ls /later 2>/dev/null || echo none'), 'kept\nnone\n')
    await sb.kill(stack.conn)
    await stack.stop()
    stack = await stack.restart()
    const runcList = await execa('runc', ['--root', join(stack.dataDir, 'runc'), 'list', '--quiet'])
    assert.equal(runcList.stdout.trim(), '', 'no container of any instance is left')
    assert.deepEqual(await readdir(join(stack.dataDir, 'storage', 'writable')), [])
    await deleteSnapshot(snap.id, stack.conn)
  })

  it('a pause or a resume asked for while a snapshot copies waits for the copy: the pause holds, and a paused sandbox stays still under its copy', async () => {
    const sb = await Sandbox.create('debian', { ...stack.conn })
    // Enough to copy for a while: the pause or resume is asked for once the copy is under way.
    await sh(sb, 'head -c 300M /dev/zero > /root/big')
    const freezer = () => readFileSync(`/sys/fs/cgroup/freezer/sandstorm/${sb.sandboxId}/freezer.state`, 'utf8').trim()
    const layers = join(stack.dataDir, 'storage', 'layers')
    const copying = async (): Promise<void> => {
      const deadline = Date.now() + 30_000
      while (!readdirSync(layers).some((n) => n.startsWith('.tmp-') && existsSync(join(layers, n, 'tree')))) {
        assert.ok(Date.now() < deadline, 'the snapshot did not start copying')
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
    }
    // A pause during the snapshot's own freeze: its thaw must not undo the pause.
    const ended: string[] = []
    const first = sb.snapshot(stack.conn).then(() => ended.push('snapshot'))
    await copying()
    const paused = stack.agent.pause(sb.sandboxId).then(() => ended.push('pause'))
    await Promise.all([first, paused])
    assert.deepEqual(ended, ['snapshot', 'pause'])
    assert.equal(freezer(), 'FROZEN', 'the pause holds after the snapshot')
    // A resume during a snapshot of the paused sandbox: the copy ends before the sandbox runs.
    ended.length = 0
    const second = sb.snapshot(stack.conn).then(() => ended.push('snapshot'))
    await copying()
    const resumed = stack.agent.resume(sb.sandboxId).then(() => ended.push('resume'))
    await Promise.all([second, resumed])
    assert.deepEqual(ended, ['snapshot', 'resume'])
    assert.equal(freezer(), 'THAWED')
    assert.equal(await sh(sb, 'echo running'), 'running\n')
    await sb.kill(stack.conn)
  })

  it('refuses to delete a snapshot that others stand on, and deletes a leaf', async () => {
    const sb = await Sandbox.create('debian', { ...stack.conn })
    await sh(sb, 'echo p > /p')
    const parent = await sb.snapshot(stack.conn)
    const [child] = await Sandbox.fork(parent.id, { ...stack.conn })
    await sh(child!, 'echo c > /c')
    const leaf = await child!.snapshot(stack.conn)
    assert.equal(leaf.parentId, parent.id)
    await assert.rejects(deleteSnapshot(parent.id, stack.conn), (err: unknown) => err instanceof ConflictError && err.message.includes(leaf.id))
    await deleteSnapshot(leaf.id, stack.conn)
    assert.ok(!(await listSnapshots(stack.conn)).some((s) => s.id === leaf.id))
    await assert.rejects(deleteSnapshot(leaf.id, stack.conn), NotFoundError)
    await child!.kill(stack.conn)
    await sb.kill(stack.conn)
    await deleteSnapshot(parent.id, stack.conn)
  })
})
