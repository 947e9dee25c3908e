import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { defaultCapabilities } from './capabilities.js'
import { cloneNamespaceFlags, defaultSeccompProfile } from './seccomp.js'
import type { OciLinuxSeccomp, OciSeccompSyscall } from './seccomp.js'

const profile = defaultSeccompProfile(defaultCapabilities)

function rulesFor(p: OciLinuxSeccomp, name: string): OciSeccompSyscall[] {
  return (p.syscalls ?? []).filter((rule) => rule.names.includes(name))
}

/** Is `name` allowed whatever its arguments? */
function allowedOutright(p: OciLinuxSeccomp, name: string): boolean {
  return rulesFor(p, name).some((rule) => rule.action === 'SCMP_ACT_ALLOW' && (rule.args ?? []).length === 0)
}

const dangerous = [
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module',
  'bpf', 'perf_event_open', 'open_by_handle_at', 'add_key', 'keyctl', 'request_key',
  'unshare', 'setns', 'mount', 'umount', 'umount2', 'pivot_root', 'move_mount', 'open_tree',
  'fsopen', 'fsmount', 'fsconfig', 'fspick', 'mount_setattr',
  'swapon', 'swapoff', 'reboot', 'syslog', 'acct', 'settimeofday', 'stime', 'clock_settime',
  'clock_settime64', 'iopl', 'ioperm', 'userfaultfd', 'quotactl', 'quotactl_fd', 'lookup_dcookie',
  'vm86', 'vm86old', 'fanotify_init', 'sethostname', 'setdomainname', 'kcmp', 'pidfd_getfd',
  'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'uselib', 'nfsservctl', '_sysctl',
  'create_module', 'get_kernel_syms', 'query_module', 'vhangup', 'mbind', 'set_mempolicy',
]

const common = [
  'read', 'write', 'openat', 'close', 'execve', 'futex', 'epoll_wait', 'epoll_pwait', 'mmap',
  'munmap', 'mprotect', 'brk', 'exit_group', 'rt_sigaction', 'rt_sigprocmask', 'newfstatat',
  'statx', 'getrandom', 'wait4', 'pipe2', 'dup3', 'fcntl', 'ioctl', 'getdents64', 'readlinkat',
  'unlinkat', 'renameat2', 'prlimit64', 'set_robust_list', 'rseq', 'arch_prctl', 'clock_gettime',
  'nanosleep', 'connect', 'bind', 'listen', 'accept4', 'sendmsg', 'recvmsg', 'uname', 'getcwd',
  'faccessat2', 'openat2', 'close_range', 'epoll_pwait2', 'chroot', 'ptrace',
]

describe('defaultSeccompProfile', () => {
  it('is an allowlist on x86_64: anything not named fails with EPERM, other ABIs are refused', () => {
    assert.equal(profile.defaultAction, 'SCMP_ACT_ERRNO')
    assert.equal(profile.defaultErrnoRet, 1)
    assert.deepEqual(profile.architectures, ['SCMP_ARCH_X86_64'])
    const actions = new Set((profile.syscalls ?? []).map((rule) => rule.action))
    assert.deepEqual([...actions].sort(), ['SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO'])
  })

  it('allows what ordinary programs call', () => {
    for (const name of common) assert.ok(allowedOutright(profile, name), name)
  })

  it('does not allow what reaches past the sandbox', () => {
    for (const name of dangerous) {
      assert.deepEqual(
        rulesFor(profile, name).filter((rule) => rule.action === 'SCMP_ACT_ALLOW'),
        [],
        `${name} must not be allowed with the default capabilities`,
      )
    }
  })

  it('lets clone make threads and processes but not namespaces', () => {
    assert.equal(cloneNamespaceFlags, 0x7e020000)
    assert.deepEqual(rulesFor(profile, 'clone'), [
      {
        names: ['clone'],
        action: 'SCMP_ACT_ALLOW',
        args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      },
    ])
    // The flags glibc passes for a thread (pthread_create) and for fork() pass the mask.
    const thread = 0x3d0f00
    const fork = 0x1200011
    assert.equal(thread & cloneNamespaceFlags, 0)
    assert.equal(fork & cloneNamespaceFlags, 0)
  })

  it('answers clone3 with ENOSYS so that libc falls back to clone', () => {
    assert.deepEqual(rulesFor(profile, 'clone3'), [{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }])
  })

  it('allows personality only with the usual personas', () => {
    const values = rulesFor(profile, 'personality').map((rule) => {
      assert.equal(rule.action, 'SCMP_ACT_ALLOW')
      assert.equal(rule.names.length, 1)
      assert.equal(rule.args?.length, 1)
      assert.equal(rule.args?.[0]?.op, 'SCMP_CMP_EQ')
      return rule.args?.[0]?.value
    })
    assert.deepEqual(values, [0x0, 0x8, 0x20000, 0x20008, 0xffffffff])
  })

  it('allows every socket family but AF_VSOCK', () => {
    assert.deepEqual(rulesFor(profile, 'socket'), [
      { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }] },
    ])
  })

  it('names each syscall in one unconditional rule at most, and never also conditionally', () => {
    const outright = new Set<string>()
    const conditional = new Set<string>()
    for (const rule of profile.syscalls ?? []) {
      assert.equal(new Set(rule.names).size, rule.names.length, 'a rule repeats a name')
      for (const name of rule.names) {
        assert.match(name, /^[a-z_][a-z0-9_]*$/)
        if (rule.action === 'SCMP_ACT_ALLOW' && (rule.args ?? []).length === 0) {
          assert.ok(!outright.has(name), `${name} is listed twice`)
          outright.add(name)
        } else {
          conditional.add(name)
        }
      }
    }
    for (const name of conditional) assert.ok(!outright.has(name), `${name} is both outright and conditional`)
  })

  it('lists the allowed names sorted', () => {
    const names = profile.syscalls?.[0]?.names ?? []
    assert.ok(names.length > 300)
    assert.deepEqual(names, [...names].sort())
  })

  it('survives a JSON round trip unchanged', () => {
    assert.deepEqual(JSON.parse(JSON.stringify(profile)), profile)
  })

  it('returns a fresh object each call', () => {
    const mine = defaultSeccompProfile(defaultCapabilities)
    mine.syscalls?.[0]?.names.push('kexec_load')
    assert.ok(!allowedOutright(defaultSeccompProfile(defaultCapabilities), 'kexec_load'))
  })

  it('opens the syscalls a capability governs only to a sandbox that holds it', () => {
    const none = defaultSeccompProfile([])
    assert.ok(!allowedOutright(none, 'chroot'))
    assert.ok(allowedOutright(none, 'read'))

    const admin = defaultSeccompProfile([...defaultCapabilities, 'CAP_SYS_ADMIN'])
    for (const name of ['mount', 'umount2', 'unshare', 'setns', 'clone', 'clone3', 'sethostname']) {
      assert.ok(allowedOutright(admin, name), name)
    }
    // With clone and clone3 allowed outright, their narrower rules would only be noise.
    assert.equal(rulesFor(admin, 'clone').length, 1)
    assert.equal(rulesFor(admin, 'clone3').length, 1)
    assert.ok(!allowedOutright(admin, 'init_module'))

    const time = defaultSeccompProfile(['CAP_SYS_TIME'])
    assert.ok(allowedOutright(time, 'settimeofday'))
    assert.ok(allowedOutright(time, 'clock_settime'))

    const syslog = defaultSeccompProfile(['CAP_SYSLOG', 'CAP_SYS_ADMIN'])
    assert.equal(rulesFor(syslog, 'syslog').length, 1)
  })

  it('refuses capability names it does not know', () => {
    assert.throws(
      () => defaultSeccompProfile(['SYS_ADMIN']),
      (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument',
    )
  })
})
