/**
 * The unmodified `e2b` SDK against a real Sandstorm (server, local agent, runc): snapshots
 * (createSnapshot, listSnapshots, deleteSnapshot, create from one) and forks.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { NotFoundError, Sandbox, SandboxError } from 'e2b'
import { deleteSnapshot, Sandbox as SandstormSandbox } from '@sandstorm/sdk'
import { useStackForE2b } from './helpers/e2b-env.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason()

/** The names in a sandbox's /home/user. */
async function homeOf(sbx: Sandbox): Promise<string[]> {
  return (await sbx.commands.run('ls -1 /home/user')).stdout.split('\n').filter(Boolean).sort()
}

describe('e2b SDK: snapshots and fork', { skip: skip ?? false }, () => {
  let stack: Stack
  const started: Sandbox[] = []
  const track = <T extends Sandbox>(sbx: T): T => (started.push(sbx), sbx)

  before(async () => {
    stack = await startStack()
    useStackForE2b(stack)
  })
  after(async () => {
    for (const sbx of started) await sbx.kill().catch(() => undefined)
    await stack?.close()
  })

  test('a snapshot holds what was written before it, not after; a create by its id or its name starts there', async (t) => {
    const parent = track(await Sandbox.create({ timeoutMs: 300_000 }))
    await parent.files.write('/home/user/before.txt', 'written before')
    const takenAt = performance.now()
    const snap = await parent.createSnapshot({ name: 'e2b-snap-test' })
    t.diagnostic(`createSnapshot took ${Math.round(performance.now() - takenAt)} ms`)
    assert.match(snap.snapshotId, /^snap-[a-z0-9]{16}$/)
    assert.deepEqual(snap.names, ['e2b-snap-test'])
    await parent.files.write('/home/user/after.txt', 'written after')

    const child = track(await Sandbox.create(snap.snapshotId))
    assert.deepEqual(await homeOf(child), ['before.txt'])
    assert.equal(await child.files.read('/home/user/before.txt'), 'written before')
    assert.equal((await child.getInfo()).templateId, (await parent.getInfo()).templateId, 'the snapshot\'s template')
    const byName = track(await Sandbox.create('e2b-snap-test', { envs: { GIVEN: 'yes' } }))
    assert.deepEqual(await homeOf(byName), ['before.txt'])
    assert.equal((await byName.commands.run('echo $GIVEN')).stdout, 'yes\n')
    // The parent goes on running with both files.
    assert.deepEqual(await homeOf(parent), ['after.txt', 'before.txt'])
    assert.equal((await parent.getInfo()).state, 'running')
  })

  test("a template's name stays the template's: E2B's createSnapshot cannot take it, and a snapshot labelled so through Sandstorm's API does not shadow it", async () => {
    const parent = track(await Sandbox.create({ timeoutMs: 300_000 }))
    await parent.files.write('/home/user/planted.txt', 'from the snapshot')
    // `base` is the template E2B's Sandbox.create() asks for.
    await assert.rejects(parent.createSnapshot({ name: 'base' }), (err: unknown) => err instanceof Error && /"base" is a template/.test(err.message))
    const labelled = await (await SandstormSandbox.connect(parent.sandboxId, stack.conn)).snapshot({ label: 'base' })
    try {
      const fresh = track(await Sandbox.create({ timeoutMs: 300_000 }))
      assert.deepEqual(await homeOf(fresh), [], 'a create of the base template started from the snapshot labelled "base"')
    } finally {
      await deleteSnapshot(labelled.id, stack.conn)
    }
  })

  test('listSnapshots pages through them, with and without a sandbox filter', async () => {
    const sbx = track(await Sandbox.create({ timeoutMs: 300_000 }))
    const taken: string[] = []
    for (let i = 0; i < 3; i++) taken.push((await sbx.createSnapshot()).snapshotId)

    const pager = Sandbox.listSnapshots({ sandboxId: sbx.sandboxId, limit: 2 })
    const pages: string[][] = []
    while (pager.hasNext) pages.push((await pager.nextItems()).map((s) => s.snapshotId))
    assert.deepEqual(pages.map((p) => p.length), [2, 1], 'three snapshots in pages of two')
    assert.deepEqual(pages.flat(), [...taken].reverse(), 'newest first')

    const own = sbx.listSnapshots()
    assert.deepEqual((await own.nextItems()).map((s) => s.snapshotId).sort(), [...taken].sort())
    assert.equal(own.hasNext, false)

    const everything: string[] = []
    const all = Sandbox.listSnapshots({ limit: 1 })
    while (all.hasNext) everything.push(...(await all.nextItems()).map((s) => s.snapshotId))
    for (const id of taken) assert.ok(everything.includes(id), `${id} in the unfiltered list`)
    assert.ok(everything.length > taken.length, 'the unfiltered list also holds the other test\'s snapshot')
    assert.deepEqual(await Sandbox.listSnapshots({ sandboxId: 'sb-nosuchsandbox00' }).nextItems(), [])
  })

  test('a deleted snapshot is gone at once, even while its sandbox stands on it', async () => {
    const sbx = track(await Sandbox.create({ timeoutMs: 300_000 }))
    await sbx.files.write('/home/user/x.txt', 'x')
    const { snapshotId } = await sbx.createSnapshot()
    assert.equal(await Sandbox.deleteSnapshot(snapshotId), true)
    assert.equal(await Sandbox.deleteSnapshot(snapshotId), false, 'a second delete finds nothing')
    const listed = await sbx.listSnapshots().nextItems()
    assert.ok(!listed.some((s) => s.snapshotId === snapshotId))
    await assert.rejects(Sandbox.create(snapshotId), (err: unknown) => err instanceof SandboxError && err.statusCode === 404 && /snapshot "snap-[a-z0-9]+" not found: it was deleted/.test(err.message))
    // The sandbox it was taken of runs on, its files whole.
    assert.equal(await sbx.files.read('/home/user/x.txt'), 'x')
  })

  test('fork: count 2, each has the parent\'s files, all three are independent, and each ends at its timeoutMs', async (t) => {
    const parent = track(await Sandbox.create({ timeoutMs: 300_000, metadata: { suite: 'fork' } }))
    await parent.files.write('/home/user/shared.txt', 'from the parent')
    const parentEnd = (await parent.getInfo()).endAt.getTime()

    const forkAt = performance.now()
    const calledAt = Date.now()
    const forks = await parent.fork({ count: 2, timeoutMs: 60_000 })
    const answeredAt = Date.now()
    t.diagnostic(`fork of 2 took ${Math.round(performance.now() - forkAt)} ms`)
    assert.equal(forks.length, 2)
    const [a, b] = forks.map((f) => {
      assert.ok(f instanceof Sandbox, `a fork started: ${String(f)}`)
      return track(f)
    }) as [Sandbox, Sandbox]
    assert.notEqual(a.sandboxId, b.sandboxId)
    assert.ok(![a.sandboxId, b.sandboxId].includes(parent.sandboxId))

    for (const f of [a, b]) assert.equal(await f.files.read('/home/user/shared.txt'), 'from the parent')
    await a.files.write('/home/user/only-a.txt', 'a')
    await b.files.write('/home/user/shared.txt', 'changed in b')
    await parent.files.write('/home/user/only-parent.txt', 'p')
    assert.deepEqual(await homeOf(a), ['only-a.txt', 'shared.txt'])
    assert.deepEqual(await homeOf(b), ['shared.txt'])
    assert.deepEqual(await homeOf(parent), ['only-parent.txt', 'shared.txt'])
    assert.equal(await a.files.read('/home/user/shared.txt'), 'from the parent')
    assert.equal(await parent.files.read('/home/user/shared.txt'), 'from the parent')

    for (const f of [a, b]) {
      const info = await f.getInfo()
      // Its 60 s count from when it runs, somewhere between the call and the answer (a cold start on
      // a busy host can take a second and more).
      const endAt = info.endAt.getTime()
      assert.ok(endAt >= calledAt + 60_000 - 1_000 && endAt <= answeredAt + 60_000 + 1_000, `a fork lives its timeoutMs (60 s) from its start: it ends ${endAt - calledAt} ms after the call, which took ${answeredAt - calledAt} ms`)
      assert.deepEqual(info.metadata, { suite: 'fork' }, 'a fork keeps the parent\'s metadata')
    }
    assert.equal((await parent.getInfo()).endAt.getTime(), parentEnd, 'the parent keeps its end')

    // A fork with a short timeout is gone when it ends.
    const [short] = await parent.fork({ timeoutMs: 1_000 })
    assert.ok(short instanceof Sandbox)
    track(short)
    await until('the short-lived fork to end', async () => !(await short.isRunning()))
    // Its destroy may still run for a moment (getInfo answers 503 then); gone is the end.
    await until('the short-lived fork to be gone', () => short.getInfo().then(() => false, (err: unknown) => err instanceof NotFoundError))
    assert.equal(await parent.isRunning(), true)
  })

  test('static Sandbox.fork; bad input is a 400 naming the field; unknown or paused sandboxes are clear errors', async () => {
    const parent = track(await Sandbox.create({ timeoutMs: 300_000 }))
    await parent.files.write('/home/user/f.txt', 'f')
    const [fork] = await Sandbox.fork(parent.sandboxId, { timeoutMs: 60_000 })
    assert.ok(fork instanceof Sandbox)
    track(fork)
    assert.equal(await fork.files.read('/home/user/f.txt'), 'f')

    await assert.rejects(parent.fork({ count: 0 }), (err: unknown) => err instanceof SandboxError && /count: expected an integer from 1 to 256, got 0/.test(err.message))
    await assert.rejects(parent.fork({ count: 257 }), /count: expected an integer from 1 to 256, got 257/)
    await assert.rejects(parent.fork({ count: 1.5 }), /count: expected an int/)
    await assert.rejects(parent.fork({ timeoutMs: -5_000 }), /timeout: expected/)
    await assert.rejects(Sandbox.fork('sb-nosuchsandbox00', { count: 1 }), NotFoundError)
    await assert.rejects(Sandbox.createSnapshot('sb-nosuchsandbox00'), NotFoundError)

    await parent.pause()
    await assert.rejects(parent.createSnapshot(), /is paused: resume it \(Sandbox\.connect\) before snapshotting it/)
    await assert.rejects(parent.fork(), /is paused: resume it \(Sandbox\.connect\) before forking it/)
  })
})

/** Why the qemu case cannot run here, or false. */
function qemuSkip(): string | false {
  if (skip) return skip
  if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86 is not installed: run scripts/setup.sh'
  return false
}

describe('e2b SDK: snapshots and fork on qemu (memory included)', { skip: qemuSkip(), timeout: 15 * 60_000 }, () => {
  let stack: Stack
  const started: Sandbox[] = []

  before(async () => {
    stack = await startStack({ defaultRuntime: 'qemu' })
    useStackForE2b(stack)
  })
  after(async () => {
    for (const sbx of started) await sbx.kill().catch(() => undefined)
    await stack?.close()
  })

  /** How many processes named `name` run in the sandbox. */
  const running = async (sbx: Sandbox, name: string) => Number((await sbx.commands.run(`cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^${name}$' || true`)).stdout.trim())

  test('a fork and a create from a snapshot start with the machine as it was: its processes still run', async (t) => {
    const parent = await Sandbox.create('debian', { timeoutMs: 600_000 })
    started.push(parent)
    const sleeper = await parent.commands.run('sleep 3600', { background: true })
    // Through a command: envd's file writes stream stdin, which the qemu guest agent does not take.
    await parent.commands.run('echo on disk too > /home/user/kept.txt')
    assert.equal(await running(parent, 'sleep'), 1)

    const forkAt = performance.now()
    const [fork] = await parent.fork({ timeoutMs: 600_000 })
    t.diagnostic(`qemu fork of 1 took ${Math.round(performance.now() - forkAt)} ms`)
    assert.ok(fork instanceof Sandbox, String(fork))
    started.push(fork)
    assert.equal(await running(fork, 'sleep'), 1, 'the sleep started in the parent runs in the fork: its memory came along')
    assert.equal((await fork.commands.run('cat /home/user/kept.txt')).stdout, 'on disk too\n')

    const { snapshotId } = await parent.createSnapshot()
    const child = await Sandbox.create(snapshotId, { timeoutMs: 600_000 })
    started.push(child)
    assert.equal(await running(child, 'sleep'), 1)
    assert.equal((await child.getInfo()).state, 'running')
    // Ended before the machines go, so that nothing is left waiting on a guest that is gone.
    await sleeper.kill()
    await sleeper.wait().catch(() => undefined)
  })
})
