/**
 * The seccomp profile of a runc sandbox: an allowlist in the spirit of Docker's default profile.
 * Everything not named here fails with EPERM. What is named is what ordinary Linux programs
 * (shells, compilers, interpreters, servers on loopback) need; what is left out reaches past the
 * sandbox (modules, kexec, mounts, namespaces, keyrings, clocks, swap, BPF, perf) or is attack
 * surface with little use inside one (io_uring, userfaultfd).
 *
 * The agent compiles it once with libseccomp (seccomp-program.ts), which skips names it does not
 * know, as runc does: syscalls newer than the host's libseccomp can be listed here and start
 * working when it is upgraded.
 */
import { assertCapabilityNames } from './capabilities.js'

/** What a seccomp rule does with a matching call. */
export type OciSeccompAction =
  | 'SCMP_ACT_KILL'
  | 'SCMP_ACT_KILL_PROCESS'
  | 'SCMP_ACT_KILL_THREAD'
  | 'SCMP_ACT_TRAP'
  | 'SCMP_ACT_ERRNO'
  | 'SCMP_ACT_TRACE'
  | 'SCMP_ACT_ALLOW'
  | 'SCMP_ACT_LOG'
  | 'SCMP_ACT_NOTIFY'

/** A syscall ABI a filter covers. */
export type OciSeccompArch = 'SCMP_ARCH_X86_64' | 'SCMP_ARCH_X86' | 'SCMP_ARCH_X32'

/** How a syscall argument is compared. For MASKED_EQ, `value` is the mask and `valueTwo` the expected result. */
export type OciSeccompOperator =
  | 'SCMP_CMP_NE'
  | 'SCMP_CMP_LT'
  | 'SCMP_CMP_LE'
  | 'SCMP_CMP_EQ'
  | 'SCMP_CMP_GE'
  | 'SCMP_CMP_GT'
  | 'SCMP_CMP_MASKED_EQ'

/** One condition on a syscall argument; all conditions of a rule must hold. */
export interface OciSeccompArg {
  index: number
  value: number
  valueTwo?: number
  op: OciSeccompOperator
}

/** One rule: what happens to calls of these names (whose arguments match `args`, if given). */
export interface OciSeccompSyscall {
  names: string[]
  action: OciSeccompAction
  errnoRet?: number
  args?: OciSeccompArg[]
}

/** The OCI `linux.seccomp` object of a runtime spec. */
export interface OciLinuxSeccomp {
  defaultAction: OciSeccompAction
  defaultErrnoRet?: number
  architectures?: OciSeccompArch[]
  syscalls?: OciSeccompSyscall[]
}

const EPERM = 1
const ENOSYS = 38

// Every namespace flag clone(2) takes. A call carrying any of them makes a namespace, which
// needs CAP_SYS_ADMIN, and namespaces are where container escapes usually start.
const CLONE_NEWNS = 0x0002_0000
const CLONE_NEWCGROUP = 0x0200_0000
const CLONE_NEWUTS = 0x0400_0000
const CLONE_NEWIPC = 0x0800_0000
const CLONE_NEWUSER = 0x1000_0000
const CLONE_NEWPID = 0x2000_0000
const CLONE_NEWNET = 0x4000_0000
/** The mask of all CLONE_NEW* flags that clone(2) accepts (0x7E020000). */
export const cloneNamespaceFlags =
  CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET

// AF_VSOCK talks to the hypervisor or host across the VM boundary and is not confined by a
// network namespace, so `network: none` would not hold for it. Docker blocks it too (since 2023).
const AF_VSOCK = 40

// personality(2) personas that are harmless and that real programs set: the default, 32-bit
// (setarch i386), UNAME26 for old build scripts, both, and 0xffffffff which only reads the
// current one. Others (e.g. READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE) weaken exploit mitigations.
const PER_LINUX = 0x0000
const PER_LINUX32 = 0x0008
const UNAME26 = 0x0002_0000
const PERSONALITY_QUERY = 0xffff_ffff
const allowedPersonas = [PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32 | UNAME26, PERSONALITY_QUERY]

// The names below are grouped by purpose; 32-bit x86 variants (…32, …64, …_time64) sit next to
// the call they stand for.

const fileSyscalls = [
  'access', 'faccessat', 'faccessat2',
  'chdir', 'fchdir', 'getcwd',
  'chmod', 'fchmod', 'fchmodat', 'fchmodat2',
  'chown', 'chown32', 'fchown', 'fchown32', 'fchownat', 'lchown', 'lchown32',
  'creat', 'open', 'openat', 'openat2', 'name_to_handle_at',
  'link', 'linkat', 'symlink', 'symlinkat', 'readlink', 'readlinkat',
  'unlink', 'unlinkat', 'rename', 'renameat', 'renameat2',
  'mkdir', 'mkdirat', 'rmdir', 'mknod', 'mknodat',
  'stat', 'stat64', 'lstat', 'lstat64', 'fstat', 'fstat64', 'fstatat64', 'newfstatat', 'statx',
  'statfs', 'statfs64', 'fstatfs', 'fstatfs64',
  'getdents', 'getdents64',
  'truncate', 'truncate64', 'ftruncate', 'ftruncate64', 'fallocate',
  'utime', 'utimes', 'utimensat', 'utimensat_time64', 'futimesat',
  'umask', 'flock',
  'sync', 'syncfs', 'fsync', 'fdatasync', 'sync_file_range',
  'fadvise64', 'fadvise64_64', 'readahead', 'cachestat',
  'getxattr', 'lgetxattr', 'fgetxattr', 'setxattr', 'lsetxattr', 'fsetxattr',
  'listxattr', 'llistxattr', 'flistxattr', 'removexattr', 'lremovexattr', 'fremovexattr',
  'inotify_init', 'inotify_init1', 'inotify_add_watch', 'inotify_rm_watch',
  // Marking needs an fanotify group, and making one (fanotify_init) needs CAP_SYS_ADMIN.
  'fanotify_mark',
]

const descriptorSyscalls = [
  'read', 'readv', 'pread64', 'preadv', 'preadv2',
  'write', 'writev', 'pwrite64', 'pwritev', 'pwritev2',
  'lseek', '_llseek',
  'close', 'close_range', 'dup', 'dup2', 'dup3', 'fcntl', 'fcntl64', 'ioctl',
  'pipe', 'pipe2', 'splice', 'tee', 'vmsplice', 'sendfile', 'sendfile64', 'copy_file_range',
  'eventfd', 'eventfd2', 'signalfd', 'signalfd4',
  'select', '_newselect', 'pselect6', 'pselect6_time64', 'poll', 'ppoll', 'ppoll_time64',
  'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old',
  'epoll_wait', 'epoll_wait_old', 'epoll_pwait', 'epoll_pwait2',
  // Linux AIO. io_uring is left out on purpose: its operations bypass seccomp and it has been
  // the source of many kernel escapes (Docker and containerd dropped it in 2023).
  'io_setup', 'io_submit', 'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'io_cancel', 'io_destroy',
]

const memorySyscalls = [
  'brk', 'mmap', 'mmap2', 'munmap', 'mremap', 'mprotect', 'madvise', 'mincore', 'msync',
  'mlock', 'mlock2', 'mlockall', 'munlock', 'munlockall', 'remap_file_pages', 'membarrier',
  'memfd_create', 'memfd_secret', 'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'map_shadow_stack',
]

const processSyscalls = [
  // clone and clone3 are not here: see the conditional rules.
  'fork', 'vfork', 'execve', 'execveat', 'exit', 'exit_group', 'wait4', 'waitid', 'waitpid',
  'getpid', 'getppid', 'gettid', 'getpgid', 'setpgid', 'getpgrp', 'getsid', 'setsid',
  'set_tid_address', 'set_robust_list', 'get_robust_list', 'rseq',
  'futex', 'futex_time64', 'futex_waitv', 'futex_wait', 'futex_wake', 'futex_requeue',
  'arch_prctl', 'set_thread_area', 'get_thread_area', 'modify_ldt',
  'prctl', 'seccomp', 'capget', 'capset',
  'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self',
  'getrlimit', 'setrlimit', 'ugetrlimit', 'prlimit64', 'getrusage', 'times',
  'pidfd_open', 'pidfd_send_signal', 'process_mrelease', 'restart_syscall',
  // Debuggers (gdb, strace) inside the sandbox. Docker allows these from kernel 4.8 on, where
  // ptrace can no longer be used to skip seccomp; older kernels are not supported here.
  'ptrace', 'process_vm_readv', 'process_vm_writev',
]

const signalSyscalls = [
  'kill', 'tkill', 'tgkill',
  'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn',
  'rt_sigsuspend', 'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo',
  'sigaltstack', 'sigprocmask', 'sigreturn', 'pause', 'alarm',
]

const timeSyscalls = [
  'time', 'gettimeofday', 'clock_gettime', 'clock_gettime64', 'clock_getres', 'clock_getres_time64',
  'clock_nanosleep', 'clock_nanosleep_time64', 'nanosleep',
  // Seccomp cannot look inside the timex struct; the kernel refuses every mode but reading
  // without CAP_SYS_TIME, which a sandbox does not get.
  'adjtimex', 'clock_adjtime', 'clock_adjtime64',
  'getitimer', 'setitimer',
  'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_gettime64',
  'timer_settime', 'timer_settime64',
  'timerfd_create', 'timerfd_gettime', 'timerfd_gettime64', 'timerfd_settime', 'timerfd_settime64',
]

const identitySyscalls = [
  'getuid', 'getuid32', 'geteuid', 'geteuid32', 'getgid', 'getgid32', 'getegid', 'getegid32',
  'getresuid', 'getresuid32', 'getresgid', 'getresgid32', 'getgroups', 'getgroups32',
  'setuid', 'setuid32', 'setgid', 'setgid32', 'setreuid', 'setreuid32', 'setregid', 'setregid32',
  'setresuid', 'setresuid32', 'setresgid', 'setresgid32',
  'setfsuid', 'setfsuid32', 'setfsgid', 'setfsgid32', 'setgroups', 'setgroups32',
]

const schedulingSyscalls = [
  'sched_yield', 'sched_getaffinity', 'sched_setaffinity', 'sched_getattr', 'sched_setattr',
  'sched_getparam', 'sched_setparam', 'sched_getscheduler', 'sched_setscheduler',
  'sched_get_priority_max', 'sched_get_priority_min', 'sched_rr_get_interval', 'sched_rr_get_interval_time64',
  'getpriority', 'setpriority', 'ioprio_get', 'ioprio_set', 'getcpu',
]

const ipcSyscalls = [
  'ipc', 'msgget', 'msgctl', 'msgsnd', 'msgrcv',
  'semget', 'semctl', 'semop', 'semtimedop', 'semtimedop_time64',
  'shmget', 'shmctl', 'shmat', 'shmdt',
  'mq_open', 'mq_unlink', 'mq_getsetattr', 'mq_notify',
  'mq_timedsend', 'mq_timedsend_time64', 'mq_timedreceive', 'mq_timedreceive_time64',
]

const networkSyscalls = [
  // socket itself is conditional (no AF_VSOCK). socketcall is 32-bit x86's multiplexer, whose
  // arguments sit behind a pointer seccomp cannot read; Docker allows it for 32-bit programs.
  'socketcall', 'socketpair', 'bind', 'connect', 'listen', 'accept', 'accept4', 'shutdown',
  'getsockname', 'getpeername', 'getsockopt', 'setsockopt',
  'send', 'sendto', 'sendmsg', 'sendmmsg', 'recv', 'recvfrom', 'recvmsg', 'recvmmsg', 'recvmmsg_time64',
]

const systemSyscalls = ['uname', 'sysinfo', 'getrandom']

/** Syscalls every sandbox may make, whatever its capabilities. */
const alwaysAllowed: readonly string[] = [
  ...fileSyscalls,
  ...descriptorSyscalls,
  ...memorySyscalls,
  ...processSyscalls,
  ...signalSyscalls,
  ...timeSyscalls,
  ...identitySyscalls,
  ...schedulingSyscalls,
  ...ipcSyscalls,
  ...networkSyscalls,
  ...systemSyscalls,
]

// Syscalls allowed only to a sandbox given the capability that governs them, as in Docker's
// profile. Without the capability the kernel would refuse them anyway; keeping them out of
// the filter also keeps their code out of reach of a kernel bug.
const capabilityGated: readonly { capability: string; names: readonly string[] }[] = [
  { capability: 'CAP_SYS_CHROOT', names: ['chroot'] },
  { capability: 'CAP_DAC_READ_SEARCH', names: ['open_by_handle_at'] },
  {
    capability: 'CAP_SYS_ADMIN',
    names: [
      'bpf', 'clone', 'clone3', 'fanotify_init', 'fsconfig', 'fsmount', 'fsopen', 'fspick',
      'lookup_dcookie', 'mount', 'mount_setattr', 'move_mount', 'open_tree', 'perf_event_open',
      'quotactl', 'quotactl_fd', 'setdomainname', 'sethostname', 'setns', 'syslog', 'umount',
      'umount2', 'unshare',
    ],
  },
  { capability: 'CAP_SYS_BOOT', names: ['reboot'] },
  { capability: 'CAP_SYS_MODULE', names: ['init_module', 'finit_module', 'delete_module'] },
  { capability: 'CAP_SYS_PACCT', names: ['acct'] },
  { capability: 'CAP_SYS_PTRACE', names: ['kcmp', 'pidfd_getfd', 'process_madvise'] },
  { capability: 'CAP_SYS_RAWIO', names: ['iopl', 'ioperm'] },
  { capability: 'CAP_SYS_TIME', names: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'] },
  { capability: 'CAP_SYS_TTY_CONFIG', names: ['vhangup'] },
  { capability: 'CAP_SYS_NICE', names: ['get_mempolicy', 'set_mempolicy', 'set_mempolicy_home_node', 'mbind'] },
  { capability: 'CAP_SYSLOG', names: ['syslog'] },
  { capability: 'CAP_BPF', names: ['bpf'] },
  { capability: 'CAP_PERFMON', names: ['perf_event_open'] },
]

/**
 * The OCI `linux.seccomp` allowlist for a sandbox whose processes hold `caps` (pass the same set
 * as `process.capabilities`). Unlisted syscalls fail with EPERM; clone(2) may not make
 * namespaces and clone3(2) answers ENOSYS, so that glibc falls back to clone, unless the
 * sandbox holds CAP_SYS_ADMIN.
 */
export function defaultSeccompProfile(caps: readonly string[]): OciLinuxSeccomp {
  assertCapabilityNames(caps)
  const held = new Set(caps)
  const allowed = new Set(alwaysAllowed)
  for (const gate of capabilityGated) {
    if (held.has(gate.capability)) for (const name of gate.names) allowed.add(name)
  }

  const syscalls: OciSeccompSyscall[] = [{ names: [...allowed].sort(), action: 'SCMP_ACT_ALLOW' }]
  // One rule per persona: conditions inside one rule are ANDed, and these must be ORed.
  for (const persona of allowedPersonas) {
    syscalls.push({
      names: ['personality'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: persona, op: 'SCMP_CMP_EQ' }],
    })
  }
  syscalls.push({
    names: ['socket'],
    action: 'SCMP_ACT_ALLOW',
    args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_NE' }],
  })
  if (!allowed.has('clone')) {
    // Threads and plain forks pass; any CLONE_NEW* flag falls through to EPERM. Argument 0 holds
    // the flags on every x86 ABI (s390 is the odd one out, and is not covered here).
    syscalls.push({
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: cloneNamespaceFlags, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    })
  }
  if (!allowed.has('clone3')) {
    // clone3 passes its flags in a struct that seccomp cannot read, so it cannot be filtered like
    // clone. ENOSYS (not EPERM) makes glibc and others retry with clone, which is filtered.
    syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS })
  }

  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    // Native x86_64 only. A 32-bit (int 0x80 / x32) syscall then fails the filter's arch check and
    // kills the caller: the compat entry points are an old source of kernel bugs.
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls,
  }
}

const operatorWords: Record<OciSeccompOperator, string> = {
  SCMP_CMP_NE: 'ne',
  SCMP_CMP_LT: 'lt',
  SCMP_CMP_LE: 'le',
  SCMP_CMP_EQ: 'eq',
  SCMP_CMP_GE: 'ge',
  SCMP_CMP_GT: 'gt',
  SCMP_CMP_MASKED_EQ: 'masked_eq',
}

/**
 * A profile as the rule lines that native/seccomp-bpf.c compiles: `default ERRNO`, then `allow
 * NAME [INDEX OP VALUE VALUE2]...` or `errno NUMBER NAME ...`, one line per name. Only what a
 * sandbox's profile uses is accepted: an errno default, allow and errno rules, native x86_64.
 */
export function seccompRuleLines(profile: OciLinuxSeccomp): string {
  if (profile.defaultAction !== 'SCMP_ACT_ERRNO') throw new Error(`seccomp: expected an SCMP_ACT_ERRNO default, got ${profile.defaultAction}`)
  if (JSON.stringify(profile.architectures ?? []) !== '["SCMP_ARCH_X86_64"]') throw new Error('seccomp: expected the native x86_64 architecture only')
  const lines = [`default ${profile.defaultErrnoRet ?? EPERM}`]
  for (const rule of profile.syscalls ?? []) {
    let head: string
    if (rule.action === 'SCMP_ACT_ALLOW') head = 'allow'
    else if (rule.action === 'SCMP_ACT_ERRNO') head = `errno ${rule.errnoRet ?? EPERM}`
    else throw new Error(`seccomp: expected allow or errno rules, got ${rule.action}`)
    const conditions = (rule.args ?? []).map((a) => `${a.index} ${operatorWords[a.op]} ${a.value} ${a.valueTwo ?? 0}`)
    for (const name of rule.names) {
      if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`seccomp: "${name}" is not a syscall name`)
      lines.push([head, name, ...conditions].join(' '))
    }
  }
  return `${lines.join('\n')}\n`
}
