/**
 * Isolation of runc sandboxes, tested as an attacker would: every case runs a real attack from
 * inside a real sandbox, asserts that it fails, and where it matters that the host is unchanged.
 * Every case runs against three sandboxes: a fresh one, one restored to a snapshot and a fork of
 * a snapshot, so that neither way of starting from a snapshot is weaker than a create.
 * File-API attacks are in isolation-files.test.ts, resource limits in limits.test.ts.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { once } from 'node:events'
import { readdir, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { CommandExitError, InvalidArgumentError, Sandbox, type SandboxCreateOptions } from '@sandstorm/sdk'
import { fingerprint, python, sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, templatesDir, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

/** A Python program that calls write(1, "RAN\\n", 4) through int 0x80 and prints "returned" if that comes back. */
const int80Probe = [
  'import ctypes, mmap',
  'buf = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)',
  'addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))',
  'msg = (addr + 64).to_bytes(4, "little")',
  '# mov eax, 4; mov ebx, 1; mov ecx, msg; mov edx, 4; int 0x80; ret',
  'buf.write(bytes([0xB8, 4, 0, 0, 0, 0xBB, 1, 0, 0, 0, 0xB9]) + msg + bytes([0xBA, 4, 0, 0, 0, 0xCD, 0x80, 0xC3]))',
  'buf.seek(64); buf.write(b"RAN\\n")',
  'ctypes.CFUNCTYPE(ctypes.c_int)(addr)()',
  'print("returned", flush=True)',
].join('\n')

/** Docker's default capability set less CAP_NET_RAW (bit 13), as the kernel prints it in /proc/<pid>/status. */
const dockerCapMask = '00000000a80405fb'

function statusField(status: string, field: string): string | undefined {
  return new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(status)?.[1]
}

/** How the attacked sandbox came to be: created, restored to a snapshot, or forked from one. */
type SandboxKind = 'fresh' | 'restored' | 'forked'

describe('runc sandboxes attacked from inside', { skip }, () => {
  let stack: Stack
  const markerName = `sandstorm-marker-${randomBytes(6).toString('hex')}`
  const markerSecret = `host-secret-${randomBytes(8).toString('hex')}`
  const hostMarkers = [`/tmp/${markerName}`, `/root/${markerName}`]

  before(async () => {
    stack = await startStack()
    await Promise.all(hostMarkers.map((p) => writeFile(p, markerSecret)))
  })

  after(async () => {
    await Promise.all(hostMarkers.map((p) => rm(p, { force: true })))
    await stack?.close()
  })

  /**
   * A sandbox of `kind`. A restored one had files written, a snapshot taken, files changed and a
   * daemon started, and was then restored to the snapshot; a forked one is a fork of such a
   * snapshot (its parent killed). Either must be held to every case a fresh one is.
   */
  async function make(kind: SandboxKind, template = 'debian', options: SandboxCreateOptions = {}): Promise<Sandbox> {
    const sbx = await Sandbox.create(template, { ...stack.conn, ...options })
    if (kind === 'fresh') return sbx
    const prepared = await sh(sbx, 'mkdir -p /work && echo before > /work/state && echo ok')
    assert.equal(prepared.stdout, 'ok\n', prepared.stderr)
    const snap = await sbx.snapshot()
    if (kind === 'forked') {
      const [fork] = await Sandbox.fork(snap.id, { ...stack.conn, ...(options.network ? { network: options.network } : {}) })
      await sbx.kill()
      return fork!
    }
    const changed = await sh(sbx, 'echo after > /work/state && touch /work/later && (setsid -f sleep 100000 </dev/null >/dev/null 2>&1) && echo ok')
    assert.equal(changed.stdout, 'ok\n', changed.stderr)
    await sbx.restore(snap.id)
    assert.equal((await sh(sbx, 'cat /work/state; ls /work')).stdout, 'before\nstate\n', 'the restore brought back the snapshot')
    return sbx
  }

  for (const kind of ['fresh', 'restored', 'forked'] as const) {
    describe(`a ${kind} runc sandbox attacked from inside`, () => attackedFromInside(kind))
  }

  /** Every attack, against one sandbox of `kind`. */
  function attackedFromInside(kind: SandboxKind): void {
    let sbx: Sandbox

    before(async () => {
      sbx = await make(kind)
    })

    describe('host files', () => {
      it('does not see host files outside its root, by path, find, /proc/1/root or ..', async () => {
        const r = await sh(sbx, [
          `cat /tmp/${markerName} /root/${markerName}`,
          `cat /proc/1/root/tmp/${markerName} /proc/self/root/root/${markerName}`,
          `cd /tmp && cat ../../../../../tmp/${markerName} ../../../../root/${markerName}`,
          'cd / && cd ../../.. && pwd',
          `find / -name '${markerName}' 2>/dev/null`,
          'echo done',
        ].join('; '))
        assert.equal(r.exitCode, 0, r.stderr)
        assert.ok(!r.stdout.includes(markerSecret) && !r.stderr.includes(markerSecret), `the host marker leaked into the sandbox:\n${r.stdout}`)
        assert.ok(!r.stdout.includes(markerName), `find saw the host marker:\n${r.stdout}`)
        assert.match(r.stdout, /^\/\ndone\n$/m, 'cd .. from / stays at /')
      })

      it('a chroot escape climbs only to the sandbox root', async () => {
        // chroot is allowed (CAP_SYS_CHROOT, as in Docker). The classic escape: chroot into a
        // subdirectory while keeping a directory outside it, climb with .., chroot there. runc
        // pivot_roots into a mount namespace, so the top it reaches is the sandbox's own root.
        const r = await python(sbx, [
          'import os',
          'os.makedirs("/tmp/jail", exist_ok=True)',
          'outside = os.open("/", os.O_RDONLY)',
          'os.chroot("/tmp/jail")',
          'os.fchdir(outside)',
          'for _ in range(64): os.chdir("..")',
          'os.chroot(".")',
          `for p in ["/tmp/${markerName}", "/root/${markerName}"]:`,
          '    try: print("READ", open(p).read())',
          '    except OSError as e: print("missing", e.errno)',
          'print(".sandstorm" in os.listdir("/"))',
        ].join('\n'))
        assert.equal(r.stdout, 'missing 2\nmissing 2\nTrue\n', r.stderr)
      })

      it('cannot reach the host paths that /proc/self/mountinfo names', async () => {
        const mountinfo = (await sh(sbx, 'cat /proc/self/mountinfo')).stdout
        // Overlay options name host directories (as in Docker); they must not lead anywhere.
        const hostPaths = [...mountinfo.matchAll(/(?:lowerdir|upperdir|workdir)=([^,\s]+)/g)].flatMap((m) => m[1]!.split(':'))
        for (const p of hostPaths) {
          assert.ok(p.startsWith(stack.dataDir) || p.startsWith(templatesDir), `unexpected host path in mountinfo: ${p}`)
        }
        const probe = await sh(sbx, ['/.sandstorm/busybox', 'sh', '-c', 'for p; do [ -e "$p" ] && echo "REACHABLE $p"; done; echo checked', 'probe', stack.dataDir, templatesDir, ...hostPaths])
        assert.equal(probe.stdout, 'checked\n')
        // No mount inside comes from the host's data dir: only the root overlay and Sandstorm's helpers.
        for (const line of mountinfo.trim().split('\n')) {
          const [, , , root, mountPoint] = line.split(' ')
          assert.ok(!root!.startsWith(stack.dataDir) && !root!.startsWith(templatesDir), `a host data dir is mounted at ${mountPoint}: ${line}`)
        }
      })
    })

    describe('descriptors', () => {
      it('no process in the sandbox holds a descriptor to a host file', async () => {
        // A descriptor is a way past the root: /proc/<pid>/fd/<n> opens what it points at, wherever it is.
        const r = await sh(sbx, 'for f in /proc/[0-9]*/fd/*; do printf "%s -> " "$f"; readlink "$f"; done 2>/dev/null; echo done')
        const outside = r.stdout.split('\n').filter((line) => line.includes(stack.dataDir) || line.includes(templatesDir))
        assert.deepEqual(outside, [], `descriptors that lead to the host:\n${outside.join('\n')}`)
        assert.match(r.stdout, /^\/proc\/1\/fd\/0 -> /m, 'the probe must see the init process')
      })
    })

    describe('kernel interfaces', () => {
      it('cannot write /proc/sys, /proc/sysrq-trigger or /sys, and masked /proc files read empty', async () => {
        const corePattern = await fingerprint('/proc/sys/kernel/core_pattern').catch(() => null)
        const targets = [
          ['|/tmp/pwn %p', '/proc/sys/kernel/core_pattern'],
          ['1', '/proc/sys/kernel/sysrq'],
          ['3', '/proc/sys/vm/drop_caches'],
          ['c', '/proc/sysrq-trigger'],
          ['1', '/sys/kernel/rcu_expedited'],
          ['/tmp/pwn', '/sys/kernel/uevent_helper'],
          ['x', '/sys/fs/cgroup/memory/memory.limit_in_bytes'],
        ]
        const script = targets.map(([value, path]) => `if echo '${value}' > ${path}; then echo "WROTE ${path}"; fi 2>/dev/null`).join('\n')
        const writes = await sh(sbx, `${script}\nmount -o remount,rw /proc/sys 2>/dev/null && echo REMOUNTED; echo done`)
        assert.equal(writes.stdout, 'done\n')

        const masked = await sh(sbx, 'for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $f ] && head -c 64 $f; done; echo done')
        assert.equal(masked.stdout, 'done\n', 'masked /proc files must read empty or not exist')
        if (corePattern) assert.deepEqual(await fingerprint('/proc/sys/kernel/core_pattern'), corePattern)
      })

      it('cannot load kernel modules, mount, or make namespaces', async () => {
        const modules = await python(sbx, [
          'import ctypes, errno',
          'libc = ctypes.CDLL(None, use_errno=True)',
          // init_module, finit_module, delete_module on x86_64
          'for name, nr, args in [("init_module", 175, (0, 0, b"")), ("finit_module", 313, (0, b"", 0)), ("delete_module", 176, (b"ext4", 0))]:',
          '    r = libc.syscall(nr, *args)',
          '    print(name, r, errno.errorcode.get(ctypes.get_errno()))',
        ].join('\n'))
        assert.equal(modules.stdout, 'init_module -1 EPERM\nfinit_module -1 EPERM\ndelete_module -1 EPERM\n', modules.stderr)

        const mounts = await sh(sbx, [
          'mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED-TMPFS',
          'mount --bind / /mnt 2>/dev/null && echo MOUNTED-BIND',
          'mount -t proc proc /mnt 2>/dev/null && echo MOUNTED-PROC',
          'unshare -m true 2>/dev/null && echo UNSHARED-MOUNT',
          'unshare -U true 2>/dev/null && echo UNSHARED-USER',
          'unshare -Ur true 2>/dev/null && echo UNSHARED-USER-ROOT',
          'unshare -n true 2>/dev/null && echo UNSHARED-NET',
          'unshare -p -f true 2>/dev/null && echo UNSHARED-PID',
          'echo done',
        ].join('; '))
        assert.equal(mounts.stdout, 'done\n')
      })

      it('cannot open a block device of the host disk, even one it makes with mknod', async () => {
        const devices = (await readdir('/sys/dev/block')).filter((d) => /^\d+:\d+$/.test(d) && !d.startsWith('7:'))
        assert.ok(devices.length > 0, 'expected a block device on the host')
        const [major, minor] = devices[0]!.split(':')
        // /dev is a tmpfs without nodev, so only the devices cgroup stands between mknod and the disk.
        const r = await sh(sbx, [
          `mknod /dev/hostdisk b ${major} ${minor} && echo MADE`,
          'head -c 512 /dev/hostdisk > /tmp/stolen 2>/dev/null && echo READ',
          `mknod /tmp/hostdisk b ${major} ${minor}`,
          'head -c 512 /tmp/hostdisk 2>/dev/null && echo READ2',
          'echo hi > /dev/hostdisk 2>/dev/null && echo WROTE',
          'echo done',
        ].join('; '))
        // Making the node is allowed (CAP_MKNOD, as in Docker); using it is not.
        assert.equal(r.stdout, 'MADE\ndone\n', r.stderr)
      })

      it('refuses syscalls that reach past the sandbox: keyrings, bpf, perf, io_uring, kexec, handles, setns', async () => {
        // x86_64 numbers; the arguments do not matter, the filter refuses before the kernel looks.
        const calls: [string, number][] = [
          ['add_key', 248], ['keyctl', 250], ['bpf', 321], ['perf_event_open', 298], ['userfaultfd', 323],
          ['io_uring_setup', 425], ['kexec_load', 246], ['open_by_handle_at', 304], ['setns', 308],
          ['pivot_root', 155], ['swapon', 167], ['acct', 163], ['settimeofday', 164], ['fanotify_init', 300],
        ]
        const r = await python(sbx, [
          'import ctypes, errno',
          'libc = ctypes.CDLL(None, use_errno=True)',
          `for name, nr in ${JSON.stringify(calls)}:`,
          '    ctypes.set_errno(0)',
          '    r = libc.syscall(nr, 0, 0, 0, 0, 0)',
          '    print(name, r, errno.errorcode.get(ctypes.get_errno()))',
        ].join('\n'))
        assert.equal(r.stdout, calls.map(([name]) => `${name} -1 EPERM\n`).join(''), r.stderr)
      })

      it('answers ENOSYS to clone3 and to syscalls numbered above the profile, as runc does', async () => {
        // ENOSYS, not EPERM, is what makes glibc and others fall back to an older call.
        const r = await python(sbx, [
          'import ctypes, errno',
          'libc = ctypes.CDLL(None, use_errno=True)',
          'for nr in (435, 999, 5000):',
          '    ctypes.set_errno(0)',
          '    r = libc.syscall(nr, 0, 0, 0, 0, 0)',
          '    print(nr, r, errno.errorcode.get(ctypes.get_errno()))',
        ].join('\n'))
        assert.equal(r.stdout, '435 -1 ENOSYS\n999 -1 ENOSYS\n5000 -1 ENOSYS\n', r.stderr)
      })

      it('never runs a 32-bit syscall (int 0x80): the caller dies before it returns', async () => {
        // write(1, "RAN\n", 4) through the i386 entry point, from a page below 4 GiB (MAP_32BIT) so
        // that the 32-bit pointer is valid. A kernel without IA32 emulation faults (SIGSEGV); one
        // with it would run the call, and only the seccomp filter's kill (SIGSYS) stops it.
        const onHost = spawnSync('python3', ['-c', int80Probe], { encoding: 'utf8' })
        const hostRunsIa32 = onHost.stdout.includes('RAN')
        const r = await python(sbx, int80Probe)
        assert.ok(!r.stdout.includes('RAN'), `the 32-bit write ran inside the sandbox: ${r.stdout}`)
        assert.ok(!r.stdout.includes('returned'), 'the 32-bit syscall must not return')
        const expected = hostRunsIa32 ? [128 + 31] : [128 + 31, 128 + 11]
        assert.ok(expected.includes(r.exitCode), `expected death by ${hostRunsIa32 ? 'SIGSYS (159)' : 'SIGSYS (159) or SIGSEGV (139)'}, got exit ${r.exitCode}: ${r.stderr}`)
      })
    })

    describe('a command\'s cwd', () => {
      it('a cwd of /proc/self/fd/N does not lead to a leaked host directory (CVE-2024-21626)', async () => {
        const hostName = hostname()
        for (let fd = 3; fd <= 10; fd++) {
          const outcome = await sbx.commands
            .run('pwd; cat ../../../../../../../etc/hostname', { cwd: `/proc/self/fd/${fd}`, timeoutMs: 10_000 })
            .then((r) => r.stdout, (e: unknown) => (e instanceof CommandExitError ? e.stdout : e instanceof InvalidArgumentError ? '' : Promise.reject(e)))
          assert.ok(!outcome.split('\n').includes(hostName), `fd ${fd} reached the host: ${outcome}`)
        }
      })
    })

    describe('network', () => {
      let hostServer: Server
      let hostConnections = 0

      before(async () => {
        hostServer = createServer((socket) => {
          hostConnections++
          socket.end('host says hi')
        })
        hostServer.listen(0, '127.0.0.1')
        await once(hostServer, 'listening')
      })
      after(() => new Promise<void>((resolve) => hostServer.close(() => resolve())))

      it("cannot reach the host's abstract unix sockets, SysV shared memory or hostname", async () => {
        // Abstract sockets belong to the network namespace, not to a path: the container-shim escape.
        const abstractName = `sandstorm-abstract-${randomBytes(4).toString('hex')}`
        let abstractConnections = 0
        const abstractServer = createServer((socket) => {
          abstractConnections++
          socket.end()
        })
        abstractServer.listen(`\0${abstractName}`)
        await once(abstractServer, 'listening')
        const shm = spawnSync('ipcmk', ['-M', '4096'], { encoding: 'utf8' })
        const shmId = /id: (\d+)/.exec(shm.stdout)?.[1]
        try {
          const r = await python(sbx, [
            'import socket',
            's = socket.socket(socket.AF_UNIX)',
            'try:',
            // libuv binds an abstract name padded with NULs to the whole sun_path (108 bytes).
            `    s.connect(b"\\0" + b"${abstractName}".ljust(107, b"\\0")); print("CONNECTED")`,
            'except OSError as e:',
            '    print("refused", e.errno)',
            'print(len(open("/proc/sysvipc/shm").read().splitlines()) - 1, "segments")',
            'print(socket.gethostname())',
          ].join('\n'))
          const [abstract, segments, name] = r.stdout.trim().split('\n')
          assert.match(abstract ?? '', /^refused /, r.stdout + r.stderr)
          assert.equal(abstractConnections, 0)
          if (shmId !== undefined) assert.equal(segments, '0 segments', 'a host SysV segment is visible')
          assert.notEqual(name, hostname())
        } finally {
          if (shmId !== undefined) spawnSync('ipcrm', ['-m', shmId])
          await new Promise<void>((resolve) => abstractServer.close(() => resolve()))
        }
      })

      it('has lo and its own eth0 and nothing else; with network "none", only lo', async () => {
        const devices = async (s: Sandbox) => (await sh(s, 'cat /proc/net/dev')).stdout.split('\n').slice(2).filter(Boolean).map((l) => l.split(':')[0]!.trim()).sort()
        assert.deepEqual(await devices(sbx), ['eth0', 'lo'])
        const none = await make(kind, 'debian', { network: 'none' })
        try {
          assert.deepEqual(await devices(none), ['lo'])
        } finally {
          await none.kill()
        }
      })

      it('cannot connect to a server on the host loopback', async () => {
        const port = (hostServer.address() as { port: number }).port
        const r = await python(sbx, [
          'import socket',
          's = socket.socket()',
          's.settimeout(5)',
          'try:',
          `    s.connect(("127.0.0.1", ${port}))`,
          '    print("CONNECTED", s.recv(64))',
          'except OSError as e:',
          '    print("refused", type(e).__name__)',
        ].join('\n'))
        assert.match(r.stdout, /^refused /, r.stdout + r.stderr)
        assert.equal(hostConnections, 0)
      })

      it('cannot open vsock sockets, which no network namespace confines', async () => {
        const r = await python(sbx, [
          'import socket',
          'try:',
          '    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM); print("OPENED")',
          'except OSError as e:',
          '    print("denied", e.errno)',
        ].join('\n'))
        assert.equal(r.stdout, 'denied 1\n', r.stderr)
      })

      it('has a working loopback of its own', async () => {
        const r = await python(sbx, [
          'import socket, threading',
          'l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)',
          'def serve():',
          '    c, _ = l.accept(); c.sendall(b"pong"); c.close()',
          'threading.Thread(target=serve).start()',
          'print(socket.create_connection(l.getsockname()).recv(16).decode())',
        ].join('\n'))
        assert.equal(r.stdout, 'pong\n', r.stderr)
      })
    })

    describe('processes', () => {
      it("sees only its own processes, with Sandstorm's init as pid 1", async () => {
        const r = await sh(sbx, 'for d in /proc/[0-9]*; do printf "%s " "${d#/proc/}"; tr "\\0" " " < $d/cmdline; echo; done')
        const procs = r.stdout.trim().split('\n').map((l) => {
          const [pid, ...args] = l.trim().split(' ')
          return { pid: Number(pid), args: args.join(' ') }
        })
        assert.equal(procs.find((p) => p.pid === 1)?.args.split(' ')[0], '/.sandstorm/init')
        assert.ok(procs.length < 10, `expected a handful of processes, saw:\n${r.stdout}`)
        assert.ok(!procs.some((p) => p.pid === process.pid), 'the host test runner is visible')
        assert.ok(!r.stdout.includes('node'), `a host process is visible:\n${r.stdout}`)
      })

      it("cannot kill the host's processes", async () => {
        const victim = spawn('sleep', ['600'], { stdio: 'ignore' })
        await once(victim, 'spawn')
        try {
          const r = await sh(sbx, `kill -9 ${victim.pid} ${process.pid} 2>&1; echo rc=$?; [ -e /proc/${victim.pid} ] && echo VISIBLE; echo done`)
          assert.match(r.stdout, /No such process/)
          assert.ok(!r.stdout.includes('VISIBLE'))
          // Both still live on the host: signal 0 throws if the process is gone.
          assert.doesNotThrow(() => process.kill(victim.pid!, 0))
          assert.equal(victim.exitCode, null)
          assert.equal(victim.signalCode, null)
        } finally {
          victim.kill('SIGKILL')
        }
      })
    })

    describe('its init', () => {
      it("cannot reach the init's channel to the agent, nor stop the init", async () => {
        const r = await sh(sbx, [
          // Root in the sandbox may list /proc/1/fd, but not follow or read what it holds.
          'readlink /proc/1/fd/3 2>/dev/null && echo LINK',
          'readlink /proc/1/exe 2>/dev/null && echo EXE',
          'cat /proc/1/environ >/dev/null 2>&1 && echo ENVIRON',
          'head -c1 /proc/1/mem >/dev/null 2>&1 && echo MEM',
          // The command holds no socket: the init's end of the channel is close-on-exec.
          'for f in /proc/$$/fd/*; do readlink "$f"; done | grep -q socket && echo SOCKET',
          'kill -KILL 1; kill -STOP 1; kill -TERM 1; kill -INT 1',
          'echo done',
        ].join('; '))
        assert.equal(r.stdout, 'done\n', r.stderr)
        const after = await sh(sbx, 'cat /proc/1/cmdline; grep ^State /proc/1/status')
        // Alive and not stopped: sleeping, or running while it reads this very command's output. It
        // names the runtime instance: the sandbox's id, or one of its own after a restore that
        // started a new instance.
        assert.match(after.stdout, /^\/\.sandstorm\/init\0sandstorm-init-(?:sb|inst)-[a-z0-9]{16}\0State:\s+[SR]/)
      })

      it('reaps orphans: an exited daemon leaves no zombie', async () => {
        // The subshell exits at once; its sleep is handed to pid 1 and ends 200 ms later. Unreaped,
        // it would stay in /proc as a zombie named sleep for good.
        await sh(sbx, '(sleep 0.2 &); true')
        await until('the orphaned sleep to be reaped', async () => (await sh(sbx, 'grep -l "^Name:\\ssleep$" /proc/[0-9]*/status 2>/dev/null; echo done')).stdout === 'done\n')
        const r = await sh(sbx, 'grep -l "^State:.*Z" /proc/[0-9]*/status 2>/dev/null; echo done')
        assert.equal(r.stdout, 'done\n')
      })
    })

    describe('privileges', () => {
      it("holds Docker's default capabilities, no_new_privs and a seccomp filter", async () => {
        const status = (await sh(sbx, 'cat /proc/self/status')).stdout
        assert.equal(statusField(status, 'CapEff'), dockerCapMask)
        assert.equal(statusField(status, 'CapPrm'), dockerCapMask)
        assert.equal(statusField(status, 'CapBnd'), dockerCapMask)
        assert.equal(statusField(status, 'CapInh'), '0000000000000000')
        assert.equal(statusField(status, 'CapAmb'), '0000000000000000')
        assert.equal(statusField(status, 'NoNewPrivs'), '1')
        assert.equal(statusField(status, 'Seccomp'), '2')
        assert.equal(statusField(status, 'Seccomp_filters'), '1')
        // The init loaded the filter before it started anything, so it holds it too.
        const init = (await sh(sbx, 'cat /proc/1/status')).stdout
        assert.equal(statusField(init, 'Seccomp'), '2')
        assert.equal(statusField(init, 'Seccomp_filters'), '1')
        assert.equal(statusField(init, 'NoNewPrivs'), '1')
      })

      it('a setuid-root binary does not raise a non-root user', async () => {
        const setup = await sh(sbx, 'cp /usr/bin/id /tmp/suid-id && cp "$(readlink -f /usr/bin/python3)" /tmp/suid-python && chmod 4755 /tmp/suid-id /tmp/suid-python && ls -l /tmp/suid-id')
        assert.match(setup.stdout, /^-rwsr-xr-x/, setup.stderr)
        const r = await sh(sbx, '/tmp/suid-id -u; /tmp/suid-python -c "import os; print(os.geteuid(), os.getresuid())"; grep CapEff /proc/self/status', { user: 'user' })
        assert.equal(r.stdout, '1000\n1000 (1000, 1000, 1000)\nCapEff:\t0000000000000000\n', r.stderr)
      })
    })

    describe('the host template', () => {
      const noHostTemplate = existsSync(join(templatesDir, 'host', 'current', 'template.json')) ? false : `no host template in ${templatesDir}`

      it("sees the host's /usr read-only and nothing else of the host", { skip: noHostTemplate }, async () => {
        const hostSbx = await make(kind, 'host')
        try {
          const name = `pwned-${randomBytes(4).toString('hex')}`
          const r = await sh(hostSbx, [
            `touch /usr/bin/${name} 2>/dev/null && echo WROTE-USR`,
            `mount -o remount,rw /usr 2>/dev/null && echo REMOUNTED`,
            `cat /tmp/${markerName} /root/${markerName} 2>/dev/null`,
            'echo done',
          ].join('; '))
          assert.equal(r.stdout, 'done\n')
          assert.ok(!existsSync(`/usr/bin/${name}`))
        } finally {
          await hostSbx.kill()
        }
      })
    })

    describe('neighbours', () => {
      it("cannot see another sandbox's files or processes", async () => {
        const other = await Sandbox.create('debian', { ...stack.conn })
        try {
          const tag = `neighbour-${randomBytes(4).toString('hex')}`
          await sh(sbx, `echo mine > /tmp/${tag}-a`)
          await other.commands.run(`echo theirs > /tmp/${tag}-b`)
          const hidden = await other.commands.run(['bash', '-c', `exec -a ${tag}-sleeper sleep 600`], { background: true })
          try {
            // B sees its own sleeper first (a background start answers once the process is forked,
            // maybe before it has exec'd under its name), so the probe of A below looks for a
            // process that is there.
            const probe = 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "'
            await until(`B's own sleeper in its process list`, async () => (await sh(other, probe)).stdout.includes(`${tag}-sleeper`))
            const fromA = await sh(sbx, `cat /tmp/${tag}-b 2>/dev/null; ${probe}; echo`)
            assert.ok(!fromA.stdout.includes('theirs'), "a file of B is visible in A")
            assert.ok(!fromA.stdout.includes(`${tag}-sleeper`), `a process of B is visible in A:\n${fromA.stdout}`)
            const fromB = await sh(other, `cat /tmp/${tag}-a 2>/dev/null; echo done`)
            assert.equal(fromB.stdout, 'done\n')
          } finally {
            await hidden.kill()
          }
        } finally {
          await other.kill()
        }
      })

      it("cannot learn another sandbox's id from the host's loop devices", async () => {
        // Every sandbox with a disk quota has a loop device whose backing file names it; with its
        // id, a neighbour could reach its public ports (<port>-<id>.<domain>).
        const other = await Sandbox.create('debian', { ...stack.conn })
        try {
          const r = await sh(sbx, 'cat /sys/block/loop*/loop/backing_file /sys/devices/virtual/block/loop*/loop/backing_file /sys/class/block/loop*/loop/backing_file /sys/dev/block/7:*/loop/backing_file 2>/dev/null; ls /sys/block /sys/class/block /sys/dev/block 2>/dev/null; echo done')
          assert.ok(!r.stdout.includes(other.sandboxId), `another sandbox's id is visible:\n${r.stdout}`)
          assert.ok(!/backing|\.disk/.test(r.stdout), `a loop device's backing file is visible:\n${r.stdout}`)
        } finally {
          await other.kill()
        }
      })

      it('killing every process in one sandbox leaves another working', async () => {
        const victim = await make(kind)
        const survivor = await Sandbox.create('debian', { ...stack.conn })
        try {
          const keeper = await survivor.commands.run('sleep 600', { background: true })
          // As root in its own pid namespace: signals everything it can see, except its init and itself.
          await sh(victim, 'kill -9 -1')
          const r = await sh(survivor, `echo ok; [ -e /proc/${keeper.pid} ] && echo keeper-alive`)
          assert.equal(r.stdout, 'ok\nkeeper-alive\n')
          await keeper.kill()
        } finally {
          await Promise.all([victim.kill(), survivor.kill()])
        }
      })
    })
  }
})
