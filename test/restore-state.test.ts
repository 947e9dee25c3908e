/**
 * What a restore of a runc sandbox leaves of the state it replaces: nothing. Every case plants,
 * after a snapshot, each kind of state a process can leave behind (processes, one deaf to SIGTERM,
 * files in every writable place, a deleted file held open, a listening socket, SysV and POSIX IPC),
 * proves it is there, restores, and proves it is gone, the snapshot's files back, the mounts those
 * of a fresh sandbox and the sandbox working. Forks of a snapshot get none of it either. These hold
 * whether a restore starts a new container or resets the old one in place.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { afterEach, after, before, describe, it } from 'node:test'
import { CommandExitError, deleteSnapshot, Sandbox, type SandboxCreateOptions, type SnapshotInfo } from '@sandstorm/sdk'
import { overlayVolatile } from '../src/storage/index.js'
import { python, sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

/** The port a planted server listens on inside the sandbox (its own network namespace). */
const plantedPort = 8765
/** Writable places a process can leave a file in, /dev itself included. */
const fileDirs = ['/tmp', '/root', '/var/tmp', '/etc', '/dev', '/dev/shm']

/** Everything of a tag's planted state that a sandbox holds, as `stateReport` reads it from inside. */
interface StateReport {
  /** argv[0] of processes named `<tag>-...`. */
  processes: string[]
  /** Whether the `<tag>-stubborn` process ignores SIGTERM (null when there is none). */
  stubbornIgnoresTerm: boolean | null
  /** Descriptors of any process that point at a path naming the tag. */
  openFiles: string[]
  /** Directories of `fileDirs` that hold a file named for the tag. */
  files: string[]
  /** Whether /proc/net/tcp{,6} has a socket in LISTEN on `plantedPort`. */
  listening: boolean
  /** What connecting to 127.0.0.1:`plantedPort` from inside gives. */
  connect: 'connected' | 'refused'
  /** SysV IPC objects of the sandbox's IPC namespace. */
  sysv: { shm: number; msg: number; sem: number }
  /** Queues in /dev/mqueue. */
  mqueues: string[]
}

/** The report of a sandbox that holds nothing of the tag. */
const nothingPlanted: StateReport = {
  processes: [],
  stubbornIgnoresTerm: null,
  openFiles: [],
  files: [],
  listening: false,
  connect: 'refused',
  sysv: { shm: 0, msg: 0, sem: 0 },
  mqueues: [],
}

/** The report of a sandbox that holds all that `plantState` made. */
function allPlanted(tag: string): StateReport {
  return {
    processes: [`${tag}-sleeper`, `${tag}-stubborn`],
    stubbornIgnoresTerm: true,
    openFiles: [`/var/tmp/${tag}-held (deleted)`],
    files: [...fileDirs].sort(),
    listening: true,
    connect: 'connected',
    sysv: { shm: 1, msg: 1, sem: 1 },
    mqueues: [`${tag}-mq`],
  }
}

/** Reads a sandbox's state from inside; the tag comes as an argument, so no process of the probe is named for it. */
const reportProgram = `
import json, os, socket, sys
tag, port, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
me = os.getpid()
procs, held, ignores = [], [], None
for p in os.listdir('/proc'):
    if not p.isdigit() or int(p) == me:
        continue
    try:
        argv0 = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[0].decode()
    except OSError:
        continue
    if argv0.startswith(tag + '-'):
        procs.append(argv0)
        if argv0 == tag + '-stubborn':
            sigign = [l for l in open(f'/proc/{p}/status') if l.startswith('SigIgn:')][0].split()[1]
            ignores = bool(int(sigign, 16) & (1 << 14))
    try:
        fds = os.listdir(f'/proc/{p}/fd')
    except OSError:
        continue
    for fd in fds:
        try:
            target = os.readlink(f'/proc/{p}/fd/{fd}')
        except OSError:
            continue
        if tag in target:
            held.append(target)
listening = False
for table in ('/proc/net/tcp', '/proc/net/tcp6'):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(':', 1)[1], 16) == port and fields[3] == '0A':
            listening = True
try:
    socket.create_connection(('127.0.0.1', port), timeout=5).close()
    connect = 'connected'
except OSError:
    connect = 'refused'
def count(kind):
    return len(open(f'/proc/sysvipc/{kind}').read().splitlines()) - 1
mq = sorted(os.listdir('/dev/mqueue')) if os.path.isdir('/dev/mqueue') else ['(no /dev/mqueue)']
print(json.dumps({
    'processes': sorted(procs),
    'stubbornIgnoresTerm': ignores,
    'openFiles': sorted(held),
    'files': sorted(d for d in dirs if os.path.lexists(f'{d}/{tag}')),
    'listening': listening,
    'connect': connect,
    'sysv': {'shm': count('shm'), 'msg': count('msg'), 'sem': count('sem')},
    'mqueues': mq,
}))
`

/** What of `tag`'s planted state the sandbox holds. */
async function stateReport(sbx: Sandbox, tag: string): Promise<StateReport> {
  const r = await sh(sbx, ['python3', '-c', reportProgram, tag, String(plantedPort), ...fileDirs])
  assert.equal(r.exitCode, 0, r.stderr)
  return JSON.parse(r.stdout) as StateReport
}

/** Creates a POSIX message queue and leaves it (queues outlive their creator). */
const mqProgram = `
import ctypes, os, sys
rt = ctypes.CDLL('librt.so.1', use_errno=True)
rt.mq_open.restype = ctypes.c_int
if rt.mq_open(('/' + sys.argv[1]).encode(), os.O_CREAT | os.O_RDWR, 0o600, None) < 0:
    raise OSError(ctypes.get_errno(), 'mq_open')
`

/** Holds a file open after deleting it, until killed. */
const holderProgram = `
import os, sys, time
f = open(sys.argv[1], 'w')
os.unlink(sys.argv[1])
time.sleep(100000)
`

/**
 * Leaves in the sandbox everything `allPlanted` lists: daemons in sessions of their own (so they
 * outlive the command), files, a held deleted file, a listening server, SysV and POSIX IPC. Waits
 * until the sandbox reports all of it.
 */
async function plantState(sbx: Sandbox, tag: string): Promise<void> {
  const detached = (argv: string) => `setsid -f ${argv} </dev/null >/dev/null 2>&1`
  const r = await sh(sbx, [
    'set -e',
    ...fileDirs.map((d) => `echo planted > ${d}/${tag}`),
    detached(`bash -c 'exec -a ${tag}-sleeper sleep 100000'`),
    // An ignored signal stays ignored across exec: this sleep is deaf to SIGTERM.
    detached(`bash -c 'trap "" TERM; exec -a ${tag}-stubborn sleep 100000'`),
    detached(`python3 -c "$HOLDER" /var/tmp/${tag}-held`),
    detached(`python3 -m http.server ${plantedPort} --bind 0.0.0.0`),
    'ipcmk -M 4096 >/dev/null && ipcmk -Q >/dev/null && ipcmk -S 1 >/dev/null',
    `python3 -c "$MQ" ${tag}-mq`,
    'echo planted',
  ].join('\n'), { envs: { HOLDER: holderProgram, MQ: mqProgram } })
  assert.equal(r.stdout, 'planted\n', r.stderr)
  const expected = allPlanted(tag)
  let last: StateReport | undefined
  await until('all planted state to show', async () => {
    last = await stateReport(sbx, tag)
    return JSON.stringify(last) === JSON.stringify(expected)
  }).catch((err: Error) => assert.fail(`${err.message}\nexpected ${JSON.stringify(expected)}\ngot      ${JSON.stringify(last)}`))
}

/** Mount points of a sandbox, each with its filesystem type and ro/rw, sorted: what to compare with a fresh one. */
async function mountTable(sbx: Sandbox): Promise<string[]> {
  const r = await sh(sbx, 'cat /proc/self/mountinfo')
  assert.equal(r.exitCode, 0, r.stderr)
  return r.stdout.trim().split('\n').map((line) => {
    const [left, right] = line.split(' - ')
    const fields = left!.split(' ')
    return `${fields[4]} ${right!.split(' ')[0]} ${fields[5]!.split(',')[0]}`
  }).sort()
}

/** Fails unless the sandbox runs commands, serves files and has a loopback on which `plantedPort` is free. */
async function assertWorks(sbx: Sandbox, tag: string): Promise<void> {
  assert.equal((await sh(sbx, 'echo alive')).stdout, 'alive\n')
  await sbx.files.write(`/work/${tag}-api`, 'through the files api')
  assert.equal(await sbx.files.read(`/work/${tag}-api`), 'through the files api')
  const loop = await python(sbx, [
    'import socket, threading',
    `l = socket.socket(); l.bind(("127.0.0.1", ${plantedPort})); l.listen(1)`,
    // The client closes first, so the wait after close (TIME_WAIT) holds its port, not plantedPort.
    'def serve():',
    '    c, _ = l.accept(); c.sendall(b"pong"); c.recv(1); c.close()',
    'threading.Thread(target=serve).start()',
    's = socket.create_connection(l.getsockname())',
    'print(s.recv(16).decode()); s.close()',
  ].join('\n'))
  assert.equal(loop.stdout, 'pong\n', loop.stderr)
  assert.equal((await sh(sbx, `rm /work/${tag}-api && echo removed`)).stdout, 'removed\n')
}

describe('a restore leaves nothing of the state it replaced (runc)', { skip, timeout: 900_000 }, () => {
  let stack: Stack
  /** What the running case made, killed and deleted after it (snapshots newest first). */
  let sandboxes: Sandbox[] = []
  let snapshots: SnapshotInfo[] = []

  const create = async (options: SandboxCreateOptions = {}) => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, ...options })
    sandboxes.push(sbx)
    return sbx
  }
  const snapshotOf = async (sbx: Sandbox) => {
    const snap = await sbx.snapshot()
    snapshots.push(snap)
    return snap
  }
  const fork = async (snapshotId: string, count: number) => {
    const forks = await Sandbox.fork(snapshotId, { ...stack.conn, count })
    sandboxes.push(...forks)
    return forks
  }

  before(async () => {
    stack = await startStack()
  })
  afterEach(async () => {
    const [killing, deleting] = [sandboxes, snapshots.reverse()]
    sandboxes = []
    snapshots = []
    for (const sbx of killing) await sbx.kill()
    for (const snap of deleting) await deleteSnapshot(snap.id, stack.conn)
  })
  after(async () => {
    await stack?.close()
  })

  /**
   * The whole round for a sandbox made with `options`: a snapshot of some files, state planted
   * after it, a restore, nothing of it left; then the same again to the same snapshot.
   */
  async function restoreLeavesNothing(options: SandboxCreateOptions): Promise<void> {
    const sbx = await create(options)
    const fresh = await create(options)
    const freshMounts = await mountTable(fresh)
    assert.equal((await sh(sbx, 'mkdir -p /work && echo kept > /work/kept.txt && echo doomed > /etc/sandstorm-base && echo ok')).stdout, 'ok\n')
    const snap = await snapshotOf(sbx)

    for (const round of [1, 2]) {
      const tag = `sandstorm-r${round}-${randomBytes(4).toString('hex')}`
      const changed = await sh(sbx, `echo changed > /work/kept.txt && echo new > /work/new-${round}.txt && rm /etc/sandstorm-base && echo ok`)
      assert.equal(changed.stdout, 'ok\n', changed.stderr)
      await plantState(sbx, tag)

      await sbx.restore(snap.id)

      assert.deepEqual(await stateReport(sbx, tag), nothingPlanted, `round ${round}: state planted after the snapshot survived its restore`)
      assert.equal((await sh(sbx, 'cat /work/kept.txt /etc/sandstorm-base; ls /work')).stdout, 'kept\ndoomed\nkept.txt\n', `round ${round}: the snapshot's files`)
      assert.deepEqual(await mountTable(sbx), freshMounts, `round ${round}: the restored sandbox's mounts differ from a fresh one's`)
      await assertWorks(sbx, tag)
    }
  }

  it('a restore ends every process, frees every file, socket and IPC object, and brings back the snapshot, twice over', async () => {
    await restoreLeavesNothing({})
  })

  it('the same holds for a sandbox with a disk quota', async () => {
    await restoreLeavesNothing({ diskMiB: 128 })
  })

  it('its mounts after a restore are a fresh sandbox\'s: /proc masked, /sys read-only, /dev/pts, /dev/shm, /dev/mqueue, the init', async () => {
    const sbx = await create()
    const snap = await snapshotOf(sbx)
    await sbx.restore(snap.id)
    const mounts = await mountTable(sbx)
    for (const expected of [/^\/ overlay rw$/, /^\/proc proc rw$/, /^\/sys sysfs ro$/, /^\/dev\/pts devpts rw$/, /^\/dev\/shm tmpfs rw$/, /^\/dev\/mqueue mqueue rw$/, /^\/\.sandstorm\/init \S+ ro$/]) {
      assert.ok(mounts.some((m) => expected.test(m)), `no mount matching ${expected} in:\n${mounts.join('\n')}`)
    }
    const masked = await sh(sbx, 'for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $f ] && head -c 64 $f; done; echo done')
    assert.equal(masked.stdout, 'done\n', 'masked /proc files must read empty or not exist')
    const sysWrite = await sh(sbx, 'echo 1 > /sys/kernel/rcu_expedited 2>/dev/null && echo WROTE; echo done')
    assert.equal(sysWrite.stdout, 'done\n')
  })

  it("the init's limits, priorities and OOM score after a restore are a fresh sandbox's, whatever the sandbox set on it", async () => {
    // Root in the sandbox may lower these on its init (its own uid) but cannot raise them back; every command inherits them.
    const probe = async (sbx: Sandbox) => (await sh(sbx, "cat /proc/1/limits /proc/1/oom_score_adj /proc/self/limits; awk '{print $19, $41}' /proc/1/stat; ionice -p 1; taskset -p 1")).stdout
    const sbx = await create()
    const fresh = await probe(await create())
    const snap = await snapshotOf(sbx)
    const lowered = await sh(sbx, 'prlimit --pid 1 --nproc=4096:4096 --nofile=512:512 --core=0:0 && echo 1000 > /proc/1/oom_score_adj && renice -n 19 -p 1 >/dev/null && ionice -c 3 -p 1 && taskset -p 1 1 >/dev/null && chrt -i -p 0 1 && echo ok')
    assert.equal(lowered.stdout, 'ok\n', lowered.stderr)
    assert.notEqual(await probe(sbx), fresh, 'the sandbox could not change its init: this case proves nothing')
    await sbx.restore(snap.id)
    assert.equal(await probe(sbx), fresh)
    assert.equal((await sh(sbx, 'for i in 1 2 3 4; do sh -c true & done; wait; echo forked')).stdout, 'forked\n')
  })

  it('its writable layer takes no sync call (overlayfs volatile, Linux 5.10+) when made and after a restore, and a first write and fsync of a template file work', async () => {
    const sbx = await create({ diskMiB: 128 })
    // The super options of the root's mount: `…,volatile` (or `fsync=volatile` on newer kernels).
    const rootOptions = async (): Promise<string> => (await sh(sbx, `awk '$5 == "/" { print $NF }' /proc/self/mountinfo`)).stdout.trim()
    const volatile = /(?:^|,)(?:fsync=)?volatile(?:,|$)/
    const expectVolatile = (options: string, when: string): void =>
      assert.equal(volatile.test(options), overlayVolatile, `${when}: root mount options ${options} (this kernel ${overlayVolatile ? 'has' : 'lacks'} volatile overlays)`)
    expectVolatile(await rootOptions(), 'made')
    const snap = await snapshotOf(sbx)
    for (const round of ['after a restore', 'after a second restore']) {
      await sbx.restore(snap.id)
      expectVolatile(await rootOptions(), round)
      // A file of the template's layer, changed for the first time (a copy-up), then synced.
      const wrote = await python(sbx, 'import os\nfd = os.open("/etc/debian_version", os.O_WRONLY | os.O_APPEND)\nos.write(fd, b"x\\n")\nos.fsync(fd)\nos.close(fd)\nos.sync()\nprint(open("/etc/debian_version").read().splitlines()[-1])')
      assert.equal(wrote.stdout, 'x\n', wrote.stderr)
    }
  })

  it('restores to any snapshot of a chain, older or newer, deletions included', async () => {
    const sbx = await create()
    assert.equal((await sh(sbx, 'mkdir /chain && echo 1 > /chain/n && echo base > /chain/base && echo ok')).stdout, 'ok\n')
    const one = await snapshotOf(sbx)
    const [second] = await fork(one.id, 1)
    assert.equal((await sh(second!, 'echo 2 > /chain/n && rm /chain/base && echo two > /chain/two && echo ok')).stdout, 'ok\n')
    const two = await snapshotOf(second!)
    assert.equal(two.parentId, one.id)
    const [third] = await fork(two.id, 1)
    assert.equal((await sh(third!, 'echo 3 > /chain/n && rm /chain/two && echo three > /chain/three && echo ok')).stdout, 'ok\n')
    const three = await snapshotOf(third!)
    assert.equal(three.parentId, two.id)
    await sh(third!, 'echo 4 > /chain/n && echo four > /chain/four')

    const listing = 'for f in /chain/*; do printf "%s=%s " "${f#/chain/}" "$(cat $f)"; done'
    for (const [snap, expected] of [
      [one, 'base=base n=1 '],
      [three, 'n=3 three=three '],
      [two, 'n=2 two=two '],
      [one, 'base=base n=1 '],
    ] as const) {
      await third!.restore(snap.id)
      assert.equal((await sh(third!, listing)).stdout, expected, `restored to ${snap.id}`)
    }
  })

  it('each of 4 forks has the snapshot\'s files and none of the state made after it, and none sees another\'s files', async () => {
    const tag = `sandstorm-fork-${randomBytes(4).toString('hex')}`
    const parent = await create()
    assert.equal((await sh(parent, 'mkdir -p /work && echo kept > /work/kept.txt && echo ok')).stdout, 'ok\n')
    const snap = await snapshotOf(parent)
    await sh(parent, 'echo changed > /work/kept.txt && echo later > /work/later.txt')
    await plantState(parent, tag)

    const forks = await fork(snap.id, 4)
    assert.equal(new Set(forks.map((f) => f.sandboxId)).size, 4)
    for (const [i, f] of forks.entries()) {
      assert.deepEqual(await stateReport(f, tag), nothingPlanted, `fork ${i} holds state of its parent made after the snapshot`)
      assert.equal((await sh(f, `cat /work/kept.txt && echo fork-${i} > /work/fork-${i} && echo ok`)).stdout, 'kept\nok\n')
    }
    for (const [i, f] of forks.entries()) {
      assert.equal((await sh(f, 'ls /work')).stdout, `fork-${i}\nkept.txt\n`, `fork ${i} sees files of another`)
      await assertWorks(f, tag)
    }
    // The parent is untouched by its forks.
    assert.deepEqual(await stateReport(parent, tag), allPlanted(tag))
    assert.equal((await sh(parent, 'cat /work/kept.txt; ls /work')).stdout, 'changed\nkept.txt\nlater.txt\n')
  })

  /** A wait's outcome in words, for the diagnostics and the assertion messages. */
  const outcomeText = (outcome: { result: unknown } | { error: unknown }) => {
    if (!('error' in outcome)) return `success: ${JSON.stringify(outcome.result)}`
    const err = outcome.error as Error
    const exit = err instanceof CommandExitError ? ` (exit code ${err.exitCode}, signal ${err.result.signal})` : ''
    return `${err.name}: ${err.message}${exit}`
  }

  for (const when of ['in flight at', 'begun after'] as const) {
    it(`a command running at the restore ends with exit code 137 and an error naming the restore, for a wait ${when} the restore`, { timeout: 120_000 }, async (t) => {
      const sbx = await create()
      const snap = await snapshotOf(sbx)
      let heard = ''
      // Output handlers make the handle follow the command at once; without them it follows from wait().
      const handlers = when === 'in flight at' ? { onStdout: (d: string) => void (heard += d) } : {}
      const running = await sbx.commands.run('echo up; exec sleep 100000', { background: true, ...handlers })
      await until('the command to run', async () => (await sbx.commands.list()).some((p) => p.pid === running.pid && p.running))
      if (when === 'in flight at') await until('the command\'s output to be followed', async () => heard === 'up\n')

      await sbx.restore(snap.id)

      // A wait that never ends fails this case by its timeout.
      const outcome = await running.wait().then((result) => ({ result }), (error: unknown) => ({ error }))
      const seen = outcomeText(outcome)
      t.diagnostic(`the wait gave ${seen}`)
      assert.ok('error' in outcome && outcome.error instanceof CommandExitError, `expected a CommandExitError, got ${seen}`)
      assert.equal(outcome.error.exitCode, 137, seen)
      assert.match(outcome.error.message, /restor/i, seen)
      assert.ok(outcome.error.message.includes(snap.id), `the error should name snapshot ${snap.id}: ${seen}`)
    })
  }

  it('a terminal open at the restore ends with a non-zero exit', { timeout: 120_000 }, async (t) => {
    const sbx = await create()
    const snap = await snapshotOf(sbx)
    let screen = ''
    const decoder = new TextDecoder()
    const terminal = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => void (screen += decoder.decode(d, { stream: true })) })
    await sbx.pty.sendInput(terminal.pid, new TextEncoder().encode('echo "up $((40+2))"\n'))
    await until('the terminal to answer', async () => screen.includes('up 42'))

    await sbx.restore(snap.id)

    const outcome = await terminal.wait().then((result) => ({ result }), (error: unknown) => ({ error }))
    const seen = outcomeText(outcome)
    t.diagnostic(`the terminal's wait gave ${seen}`)
    assert.ok('error' in outcome && outcome.error instanceof CommandExitError, `expected a CommandExitError, got ${seen}`)
    assert.notEqual(outcome.error.exitCode, 0, seen)
  })

  it('a snapshot whose mount point is a symlink gets the mount, never its target: /etc/resolv.conf -> /etc/passwd', async () => {
    // Made in a sandbox without a network, where /etc/resolv.conf is a plain file of its root.
    const attacker = await create({ network: 'none' })
    await sh(attacker, 'cp /etc/passwd /root/passwd.orig && rm -f /etc/resolv.conf && ln -s /etc/passwd /etc/resolv.conf')
    const snap = await snapshotOf(attacker)
    const victim = await create()
    const resolvBefore = (await sh(victim, 'cat /etc/resolv.conf')).stdout
    await victim.restore(snap.id)
    const after = await sh(victim, 'cmp /etc/passwd /root/passwd.orig && echo passwd-intact; cat /etc/resolv.conf; grep -c " /etc/passwd " /proc/self/mountinfo || true')
    assert.match(after.stdout, /^passwd-intact\n/, after.stdout)
    assert.ok(after.stdout.includes(resolvBefore), `resolv.conf is the sandbox's own after the restore:\n${after.stdout}`)
    assert.match(after.stdout, /\n0\n$/, 'nothing is mounted on /etc/passwd')
  })

  it('commands started while a restore runs either end with it or start on the new root: none slips in between', { timeout: 180_000 }, async () => {
    const sbx = await create()
    const snap = await snapshotOf(sbx)
    // Each command marks its start in /tmp of the root it runs on, then sleeps. One that reached
    // the init between its reset and the root switch would run on with its mark in the old root.
    const start = () => sbx.commands.run('echo > /tmp/mark-$$; exec sleep 100000', { background: true })
    // A few run before the restore is asked for, so that some surely end with it (on a stalled
    // host the staggered ones could all arrive after it); the rest land around its reset and switch.
    const first = [await start(), await start(), await start()]
    const staggered = Array.from({ length: 21 }, async (_, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * 2))
      return start()
    })
    await new Promise((resolve) => setTimeout(resolve, 10))
    await sbx.restore(snap.id)
    const handles = [...first, ...(await Promise.all(staggered))]
    const running = (await sbx.commands.list()).filter((p) => p.running).map((p) => p.pid)
    let ended = 0
    for (const h of handles) {
      if (running.includes(h.pid)) {
        // A command started after the switch may not have written its mark yet: it comes soon. One
        // that started before the switch wrote it into the old root, where it never shows.
        const marked = await until(`the mark of command ${h.pid}`, async () => (await sh(sbx, `test -e /tmp/mark-${h.pid} && echo yes || echo no`)).stdout === 'yes\n', 10_000).catch(() => false)
        assert.ok(marked, `command ${h.pid} runs on after the restore without its mark in the new root: it started between the reset and the switch`)
      } else {
        ended++
        await assert.rejects(h.wait(), (err: unknown) => err instanceof CommandExitError && err.result.restoredTo === snap.id)
      }
    }
    // Both kinds happened, or the case proved nothing about the window.
    assert.ok(ended > 0, 'no command was running at the restore')
  })
})
