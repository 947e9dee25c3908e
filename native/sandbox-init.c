/*
 * PID 1 of every runc sandbox. It reaps orphans, and starts commands for the agent: a request on
 * fd 3 (a socket the agent handed to `runc run --preserve-fds`) forks a child here, already inside
 * every namespace, cgroup and seccomp filter of the sandbox. That is what `runc exec` does, minus
 * runc's own start-up (a Go binary, a re-exec and a config parse per command).
 *
 * Each command runs under a keeper: a process forked for it that becomes a child subreaper and
 * starts the command (a clone that shares its memory until the exec, see keep). Whatever the
 * command leaves behind (a `server &`, a double-forked daemon in a session of its own) stays a
 * descendant of its keeper, so that a kill or a timeout ends the whole tree, found by parent
 * links in the sandbox's /proc. No process is moved between cgroups on the way: a cgroup v1 move
 * waits for an RCU grace period, 10-25 ms after an idle spell.
 *
 * Root in the sandbox may kill a keeper: what it kept then goes to the init, out of every tree.
 * The init kills it: every process that no live keeper holds (a child of the init that is no
 * keeper, and all it started) is what a killed keeper left, since the init forks nothing else and
 * a keeper that exits by itself has no child left. A command whose keeper died before it ended is
 * reported killed with it (EXIT 137, reason 2), once nothing it left runs. Which command an orphan
 * came from needs no answer (two keepers killed at once leave their orphans mixed): all are killed.
 * A keeper the sandbox stopped is killed the same way once a kill of its tree has waited
 * KILL_WAIT_MS for it. (A cgroup per command would hold a tree without a keeper, but each keeper
 * would have to be moved into its own: 0.3-44 ms a move on a v1 or v2 hierarchy, measured; and
 * clone3's CLONE_INTO_CGROUP, which needs no move, is refused by the sandbox's filter.)
 *
 * A keeper reports that its command started (or why not) in microseconds, but root in the sandbox
 * may stop it first. The init waits for that report as for any other event, so the sandbox's other
 * commands go on meanwhile; one that has not come after VERDICT_WAIT_MS fails the start (FAILED,
 * reason F_SILENT) and the keeper is killed with all it started.
 *
 * The agent owns the trust: everything said on fd 3 comes from inside the sandbox and is read as
 * untrusted data. This process only spares the sandbox's own code a slower path to the same place.
 *
 * Before anything else it loads the sandbox's seccomp filter from fd 4 (init-filter.c), or exits.
 * A restarted agent gets a new channel through an abstract socket (init-handover.c), and a
 * command's tree is found in the sandbox's /proc (init-tree.c).
 *
 * A command may run on a terminal of its own (EXEC_PTY): the init opens a pseudo-terminal of the
 * sandbox's devpts instance, checked to be one (the sandbox's root may have put anything at the
 * path), gets its other end from the master itself (TIOCGPTPEER, never a path from ptsname), and
 * the command makes it its controlling terminal. Input is written to the master, whose line
 * discipline turns Ctrl-C into SIGINT and Ctrl-D into an end of file; its output (stdout and
 * stderr are the one terminal) goes to the agent as STDOUT; a closed stdin leaves the terminal up.
 *
 * Frames, both ways: u32 length (little endian) of what follows, u8 type, u32 command id, payload.
 * To the init: EXEC (see start), EXEC_PTY (u16 cols, u16 rows, then EXEC's payload), KILL (u32
 * signal), STDIN (bytes), STDIN_CLOSE, PAUSE and RESUME (of output), RESIZE (u16 cols, u16 rows
 * of a command's terminal: the kernel sends SIGWINCH to its foreground process group), RESET
 * (every other process of the sandbox is killed and reaped: the agent's restore comes next).
 * From it: STARTED (u32 pid), FAILED (u8 reason F_*, u32 errno, then text for people), STDOUT and
 * STDERR (bytes), ACK (u32 stdin bytes taken), EXIT (u32 status; then u8 1 for a command that a
 * RESET ended, 2 for one killed with its keeper), STDIN_GONE, READY (id 0, u32 instructions of
 * the seccomp filter), RESET (u32 processes left: 0 once none is).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <termios.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "init-parts.h"

enum { H_EXEC = 1, H_KILL = 2, H_STDIN = 3, H_STDIN_CLOSE = 4, H_PAUSE = 5, H_RESUME = 6, H_EXEC_PTY = 7, H_RESIZE = 8, H_RESET = 9 };
enum { I_STARTED = 1, I_FAILED = 2, I_STDOUT = 3, I_STDERR = 4, I_ACK = 5, I_EXIT = 6, I_STDIN_GONE = 7, I_READY = 8, I_RESET = 9 };
/* Why a command did not start (FAILED's first byte). F_SILENT: its keeper never reported (stopped
 * by the sandbox); F_LOST: its keeper died before it reported. */
enum { F_REQUEST = 1, F_TERMINAL_SIZE = 2, F_TERMINAL = 3, F_PIPE = 4, F_FORK = 5, F_CWD = 6, F_USER = 7, F_SILENT = 8, F_LOST = 9 };
static const char *const failure_names[] = {"", "start", "terminal size", "terminal", "pipe", "fork", "cwd", "user", "start", "start"};
/* Why a command ended, beyond its status (EXIT's byte after it). */
enum { E_RESET = 1, E_KEEPER_KILLED = 2 };

#define CTL 3
#define FILTER_FD 4             /* the sandbox's seccomp program, compiled by the agent (read to its end, then closed) */
#define MAX_FRAME (1u << 20)    /* larger requests end the channel: the agent never sends them */
#define MAX_PROCS 256           /* commands running at once; more are refused */
#define READ_CHUNK 65536
#define OUT_HIGH (4u << 20)     /* output queued for the agent beyond this stops reading children */
#define ORPHAN_GRACE_MS 200     /* output still read after a command ended while children hold its pipes */
#define DRAIN_READS 16          /* reads of each pipe at most when a command's exit is reported with its pipes open */
#define KILL_WAIT_MS 2000       /* longest wait for a killed tree to be reaped (a process stuck in the kernel) */
#define KILL_PASSES 8           /* passes over /proc per kill; the tree is killed again until its keeper is gone */
#define LAUNCH_STACK (64u << 10) /* the stack of a command's child until its exec (a PATH search takes 4 KiB of it) */
#define REKILL_MAX_MS 200       /* the longest spell between two kills of a tree that is not gone yet */
#define VERDICT_WAIT_MS 10000   /* longest wait for a keeper's report that its command started (it takes microseconds) */

struct buf {
  char *data;
  size_t len, cap;
};

struct proc {
  int used;
  uint32_t id;
  pid_t keeper, pid;
  int status_fd, in_fd, out_fd, err_fd;
  int term_fd; /* the master of its terminal, kept for resizes while the command runs; -1 when none */
  int ready_fd; /* where its keeper reports that the command started; -1 once it did (or failed) */
  long long start_by; /* when a keeper that has not reported is given up on */
  struct buf in;
  int in_close_pending, paused, exited, reported, status, keeper_gone, keeper_killed;
  long long killed_at; /* when a SIGKILL of its tree was asked for; 0 when none */
  long long rekill_at, rekill_gap; /* when to kill what is left of a killed tree again, and the spell after */
  long long exited_at;
};

static struct proc procs[MAX_PROCS];
static struct buf to_host, from_host;
static int ctl_open;
static int listener = -1; /* where a restarted agent hands over a new channel */
static uint32_t filter_length; /* instructions of the seccomp filter this process loaded */
static int orphans; /* processes no live keeper holds, at the last sweep (see sweep) */
static int sweep_now; /* a child of the init died that may have left orphans */
static long long sweep_at, sweep_gap; /* when to sweep again while orphans are left, and the spell after */


static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void buf_append(struct buf *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) abort();
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
}

static void buf_consume(struct buf *b, size_t n) {
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

static void buf_free(struct buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static void put_u32(char *at, uint32_t v) {
  for (int i = 0; i < 4; i++) at[i] = (char)(v >> (8 * i));
}

static uint32_t get_u32(const char *at) {
  const unsigned char *u = (const unsigned char *)at;
  return u[0] | u[1] << 8 | u[2] << 16 | (uint32_t)u[3] << 24;
}

static unsigned short get_u16(const char *at) {
  const unsigned char *u = (const unsigned char *)at;
  return (unsigned short)(u[0] | u[1] << 8);
}

static void send_frame(int type, uint32_t id, const void *payload, size_t n) {
  if (!ctl_open) return;
  char head[9];
  put_u32(head, (uint32_t)(5 + n));
  head[4] = (char)type;
  put_u32(head + 5, id);
  buf_append(&to_host, head, sizeof head);
  if (n) buf_append(&to_host, payload, n);
}

static void send_u32(int type, uint32_t id, uint32_t value) {
  char v[4];
  put_u32(v, value);
  send_frame(type, id, v, 4);
}

/* EXIT: the command's status, and why it ended where that is more than the status says (E_*; 0: no more). */
static void send_exit(struct proc *c, int reason) {
  char v[5];
  put_u32(v, (uint32_t)c->status);
  v[4] = (char)reason;
  send_frame(I_EXIT, c->id, v, reason ? 5 : 4);
  c->reported = 1;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static struct proc *find(uint32_t id) {
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].used && procs[i].id == id) return &procs[i];
  return NULL;
}

static void failed(uint32_t id, int reason, int err) {
  char text[256];
  text[0] = (char)reason;
  put_u32(text + 1, (uint32_t)err);
  int n = reason == F_SILENT ? snprintf(text + 5, sizeof text - 5, "start: the keeper did not report within %d ms", VERDICT_WAIT_MS)
                             : snprintf(text + 5, sizeof text - 5, "%s: %s", failure_names[reason], strerror(err));
  send_frame(I_FAILED, id, text, 5 + (size_t)n);
}

/*
 * Runs in the command's child, which shares the keeper's memory until it execs (see keep): a PATH
 * search as a shell does it, from the command's own environment. It writes only its own stack:
 * the message of a failed exec is formatted here and written in one call, with no stdio stream.
 */
static void exec_command(char **argv, char **envp) {
  int err;
  if (strchr(argv[0], '/')) {
    execve(argv[0], argv, envp);
    err = errno;
  } else {
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (char **e = envp; *e; e++)
      if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    int denied = 0;
    char full[4096];
    for (const char *dir = path; dir;) {
      const char *end = strchr(dir, ':');
      size_t len = end ? (size_t)(end - dir) : strlen(dir);
      if (len + strlen(argv[0]) + 2 <= sizeof full) {
        snprintf(full, sizeof full, "%.*s/%s", (int)len, len ? dir : ".", argv[0]);
        execve(full, argv, envp);
        if (errno == EACCES) denied = 1;
      }
      dir = end ? end + 1 : NULL;
    }
    err = denied ? EACCES : ENOENT;
  }
  char text[4352];
  int n = snprintf(text, sizeof text, "%s: %s\n", argv[0], err == ENOENT ? "not found" : strerror(err));
  if (n > 0 && write(2, text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1) < 0) { /* nobody reads stderr */ }
  _exit(err == ENOENT ? 127 : 126);
}

static int by_int(const void *a, const void *b) {
  return *(const int *)a - *(const int *)b;
}

/* Closes every descriptor from 3 up but these. */
static void close_except(int *kept, int n) {
  qsort(kept, (size_t)n, sizeof(int), by_int);
  unsigned from = 3;
  for (int i = 0; i <= n; i++) {
    unsigned to = i < n ? (unsigned)kept[i] : ~0u;
    if (to > from) {
      unsigned last = to - 1;
      if (close_range(from, last, 0) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (unsigned fd = from; fd <= last && (long)fd < max; fd++) close((int)fd);
      }
    }
    if (i < n) from = (unsigned)kept[i] + 1;
  }
}

/*
 * A new pseudo-terminal of the sandbox's devpts instance, `cols` x `rows`: its master (non-blocking)
 * in *master and the other end in *slave, both close-on-exec; 0, or an errno. Whatever is at the
 * paths was put there by the sandbox's root (a FIFO, a file, a link): only the ptmx device is taken,
 * opened without blocking, and the other end comes from the master, not from a path.
 */
static int open_terminal(unsigned short cols, unsigned short rows, int *master, int *slave) {
  static const char *const paths[] = {"/dev/pts/ptmx", "/dev/ptmx"};
  int err = ENOENT;
  for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
    int fd = open(paths[i], O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      err = errno;
      continue;
    }
    struct stat st;
    int unlock = 0;
    struct winsize size = {.ws_row = rows, .ws_col = cols};
    if (fstat(fd, &st) || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2) err = ENOTTY;
    else if (ioctl(fd, TIOCSPTLCK, &unlock) || ioctl(fd, TIOCSWINSZ, &size)) err = errno;
    else {
      int peer = ioctl(fd, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (peer >= 0) {
        /* Backspace erases a whole UTF-8 character, as on a console. */
        struct termios mode;
        if (tcgetattr(peer, &mode) == 0) {
          mode.c_iflag |= IUTF8;
          tcsetattr(peer, TCSANOW, &mode);
        }
        *master = fd;
        *slave = peer;
        return 0;
      }
      err = errno;
    }
    close(fd);
  }
  return err;
}

/* What the command's child is given: it reads this (on the keeper's stack) and nothing else of the
 * keeper's memory. */
struct launch {
  int ready_fd, in, out, err, terminal;
  uint32_t uid, gid;
  const char *cwd;
  char **argv, **envp;
};

/*
 * The command's child, up to its exec. It shares the keeper's memory (the keeper is stopped until
 * the exec or exit, as after a vfork), so it only makes system calls, on a stack of its own: the
 * ids are set by raw calls (libc's setuid would coordinate threads through shared state), and a
 * failure's errno is read right after the call that set it.
 */
static int launch_command(void *arg) {
  const struct launch *l = arg;
  dup2(l->in, 0);
  dup2(l->out, 1);
  dup2(l->err, 2);
  char verdict[9] = {'R'};
  int err = 0;
  /* On a terminal: a session of its own with the terminal as its controlling tty (job control,
   * SIGINT from Ctrl-C, SIGHUP when it goes), owned by its user as login does it. */
  if (l->terminal && (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) || fchown(0, l->uid, (gid_t)-1))) verdict[0] = 'T', err = errno;
  else if (syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setgid, l->gid) || syscall(SYS_setuid, l->uid)) verdict[0] = 'U', err = errno;
  else if (chdir(l->cwd)) verdict[0] = 'C', err = errno;
  put_u32(verdict + 1, (uint32_t)getpid());
  put_u32(verdict + 5, (uint32_t)err);
  if (write(l->ready_fd, verdict, sizeof verdict) != sizeof verdict || verdict[0] != 'R') _exit(127);
  close(l->ready_fd);
  exec_command(l->argv, l->envp);
  return 127;
}

/*
 * The keeper: starts the command, reports its status, then reaps what it left until nothing is.
 * The command's child is cloned sharing this process's memory and stopped parent (what
 * posix_spawn does): a fork would copy the page tables and fault in copies of the pages either
 * side then writes, only for the exec to throw them away; in a sandbox that costs about as much
 * as the command `true` itself.
 */
static void keep(int status_fd, int ready_fd, int in, int out, int err, int terminal, uint32_t uid, uint32_t gid, const char *cwd, char **argv, char **envp) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  struct launch launch = {.ready_fd = ready_fd, .in = in, .out = out, .err = err, .terminal = terminal, .uid = uid, .gid = gid, .cwd = cwd, .argv = argv, .envp = envp};
  /* Untouched by the init, so never copied by its fork: the child faults in the few pages it uses.
   * Not an mmap: its munmap, in a memory that two CPUs used, would flush both CPUs' TLBs. */
  static char stack[LAUNCH_STACK] __attribute__((aligned(16)));
  pid_t pid = clone(launch_command, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &launch);
  /* The command has exec'd (or failed) by now, with SIGPIPE as it should have it. The keeper's own
   * write of its status to an init that has stopped reading (a start that failed) fails with EPIPE
   * instead of killing it: a keeper dead by a signal is one the sandbox killed (see reap). */
  signal(SIGPIPE, SIG_IGN);
  if (pid < 0) {
    char verdict[9] = {'F'};
    put_u32(verdict + 5, (uint32_t)errno);
    if (write(ready_fd, verdict, sizeof verdict) < 0) _exit(127);
    _exit(127);
  }
  close(ready_fd), close(in);
  if (out != in) close(out);
  if (err != in && err != out) close(err);
  for (;;) {
    int status;
    pid_t done = waitpid(-1, &status, 0);
    if (done < 0 && errno == EINTR) continue;
    if (done < 0) _exit(0); /* no child left */
    if (done == pid) {
      char v[4];
      put_u32(v, (uint32_t)(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)));
      if (write(status_fd, v, 4) < 0) { /* init is gone with the sandbox */ }
      close(status_fd);
    }
  }
}

static void kill_tree(struct proc *c, int sig);

/*
 * EXEC payload: u32 uid, u32 gid, u32 argc, u32 envc, then NUL-terminated strings: cwd, argv,
 * env. The command takes its user and cwd, and says over a pipe that it did (or why not) before
 * it execs; a failed exec prints why on its stderr and exits 127 (126 when denied), as a shell.
 * With `term`, its stdin, stdout and stderr are a new terminal of that size instead of pipes.
 */
static void start(uint32_t id, const char *p, size_t n, const struct winsize *term) {
  if (n < 16 || id == 0) return failed(id, F_REQUEST, EINVAL);
  uint32_t uid = get_u32(p), gid = get_u32(p + 4), argc = get_u32(p + 8), envc = get_u32(p + 12);
  if (argc == 0 || argc > 65536 || envc > 65536) return failed(id, F_REQUEST, EINVAL);
  char **strings = calloc(argc + envc + 3, sizeof(char *));
  if (!strings) return failed(id, F_REQUEST, ENOMEM);
  const char *at = p + 16, *end = p + n;
  for (uint32_t i = 0; i < 1 + argc + envc; i++) {
    const char *nul = memchr(at, 0, (size_t)(end - at));
    if (!nul) {
      free(strings);
      return failed(id, F_REQUEST, EINVAL);
    }
    strings[i + (i > argc ? 1 : 0)] = (char *)at;
    at = nul + 1;
  }
  /* strings: cwd, argv[argc], NULL, env[envc], NULL */
  char *cwd = strings[0], **argv = strings + 1, **envp = strings + argc + 2;
  argv[argc] = NULL;
  envp[envc] = NULL;

  struct proc *slot = NULL;
  for (int i = 0; i < MAX_PROCS && !slot; i++)
    if (!procs[i].used) slot = &procs[i];
  if (!slot || find(id)) {
    free(strings);
    return failed(id, F_REQUEST, slot ? EEXIST : EAGAIN);
  }
  int in[2], out[2], err[2] = {-1, -1}, status[2], ready[2], term_fd = -1;
  if (term) {
    int master = -1, slave = -1, e = open_terminal(term->ws_col, term->ws_row, &master, &slave);
    /* A second and third copy of the master: stdin (closed on its own, the terminal staying up)
     * and resizes (until the command ended). */
    int input = e ? -1 : fcntl(master, F_DUPFD_CLOEXEC, 0);
    term_fd = input < 0 ? -1 : fcntl(master, F_DUPFD_CLOEXEC, 0);
    if (!e && term_fd < 0) {
      e = errno;
      if (input >= 0) close(input);
      close(master), close(slave);
    }
    if (e) {
      free(strings);
      return failed(id, F_TERMINAL, e);
    }
    in[0] = out[1] = err[1] = slave;
    in[1] = input;
    out[0] = master;
  }
  int *pipes[5] = {status, ready, in, out, err};
  int count = term ? 2 : 5;
  for (int i = 0; i < count; i++) {
    if (pipe2(pipes[i], O_CLOEXEC) == 0) continue;
    int e = errno;
    while (i-- > 0) close(pipes[i][0]), close(pipes[i][1]);
    if (term) close(in[0]), close(in[1]), close(out[0]), close(term_fd);
    free(strings);
    return failed(id, F_PIPE, e);
  }
  pid_t keeper = fork();
  if (keeper == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    /* Only what the keeper and its command need stays open here: the keeper never execs, and a
     * copy of another command's stdin would keep that one from ever reading its end. */
    int kept[5] = {in[0], out[1], err[1], status[1], ready[1]};
    close_except(kept, 5);
    keep(status[1], ready[1], in[0], out[1], err[1], term != NULL, uid, gid, cwd, argv, envp);
  }
  free(strings);
  close(in[0]), close(status[1]), close(ready[1]);
  if (!term) close(out[1]), close(err[1]);
  if (keeper < 0) {
    int e = errno;
    close(in[1]), close(out[0]), close(status[0]), close(ready[0]);
    if (err[0] >= 0) close(err[0]);
    if (term_fd >= 0) close(term_fd);
    return failed(id, F_FORK, e);
  }
  /* Its report is waited for in the main loop, bounded (root in the sandbox may stop the keeper
   * before it reports): see read_verdict and give_up_starts. */
  *slot = (struct proc){.used = 1, .id = id, .keeper = keeper, .status_fd = status[0], .in_fd = in[1], .out_fd = out[0], .err_fd = err[0], .term_fd = term_fd, .ready_fd = ready[0], .start_by = now_ms() + VERDICT_WAIT_MS};
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  if (err[0] >= 0) fcntl(err[0], F_SETFL, O_NONBLOCK);
  fcntl(status[0], F_SETFL, O_NONBLOCK);
  fcntl(ready[0], F_SETFL, O_NONBLOCK);
}

/* A command that did not start: the failure is told (unless its agent is gone), and its keeper
 * exits by itself or was killed; it is reaped and dropped. */
static void start_failed(struct proc *c, int reason, int err) {
  close_fd(&c->ready_fd);
  if (!c->reported) failed(c->id, reason, err);
  c->reported = 1;
  close_fd(&c->in_fd);
  close_fd(&c->status_fd);
  close_fd(&c->term_fd);
}

/* The keeper's report (9 bytes, one write): 'R' and the command's pid, or what failed and errno. */
static void read_verdict(struct proc *c) {
  char verdict[9];
  ssize_t got = read(c->ready_fd, verdict, sizeof verdict);
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (got != sizeof verdict) return start_failed(c, F_LOST, EIO);
  int err = (int)get_u32(verdict + 5);
  switch (verdict[0]) {
  case 'R':
    close_fd(&c->ready_fd);
    c->pid = (pid_t)get_u32(verdict + 1);
    if (!c->reported) send_u32(I_STARTED, c->id, (uint32_t)c->pid);
    return;
  case 'C':
    return start_failed(c, F_CWD, err);
  case 'U':
    return start_failed(c, F_USER, err);
  case 'T':
    return start_failed(c, F_TERMINAL, err);
  default:
    return start_failed(c, F_FORK, err);
  }
}

/*
 * Signals every descendant of a command's keeper. SIGKILL repeats for a few passes, so that a
 * process forked during one pass is caught by the next (the killed cannot fork again). A killed
 * process still counts until it ran its exit, which a throttled cgroup delays, so a pass cannot
 * tell "dying" from "just forked": the main loop kills the tree again until its keeper is gone.
 */
static void kill_tree(struct proc *c, int sig) {
  for (int pass = 0; pass < KILL_PASSES; pass++)
    if (signal_descendants(c->keeper, sig) <= 0 || sig != SIGKILL) return;
}

static void command_ended(struct proc *c, int status);

static void mark_killed(struct proc *c) {
  if (c->killed_at) return;
  c->killed_at = now_ms();
  c->rekill_gap = 5;
  c->rekill_at = c->killed_at + c->rekill_gap;
}

/* A keeper that has not reported in time is killed with all it started. */
static void give_up_starts(long long now) {
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc *c = &procs[i];
    if (!c->used || c->ready_fd < 0 || now < c->start_by) continue;
    start_failed(c, F_SILENT, ETIMEDOUT);
    mark_killed(c);
    kill_tree(c, SIGKILL);
    kill(c->keeper, SIGKILL);
  }
}

/*
 * Waits for the report of every command still starting, as the init did when it waited for each in
 * turn: a command asked for before a reset has started once the reset kills it, so that it ends
 * with the reset as every other (its agent is told so), and does not fail. A keeper the sandbox
 * stopped is continued; one that does not report by its bound fails as in the main loop.
 */
static void await_starts(void) {
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc *c = &procs[i];
    if (!c->used || c->ready_fd < 0) continue;
    /* The report comes from the command's child after it took the command's uid: a process of that
     * uid may have stopped the child, not the keeper. */
    kill(c->keeper, SIGCONT);
    signal_descendants(c->keeper, SIGCONT);
    for (long long now = now_ms(); c->ready_fd >= 0 && now < c->start_by; now = now_ms()) {
      struct pollfd report = {.fd = c->ready_fd, .events = POLLIN};
      if (poll(&report, 1, (int)(c->start_by - now)) > 0) read_verdict(c);
    }
    if (c->ready_fd >= 0) start_failed(c, F_SILENT, ETIMEDOUT);
  }
}

/*
 * Before a restore: every process of the sandbox but this one is killed (kill -1 from PID 1 reaches
 * them all, and a fork racing it fails) and reaped, and every command still known is reported
 * ended by the reset, its pipes and terminal closed. The answer says how many processes were
 * still there when the wait gave up (a process stuck in the kernel): 0 when none is left.
 */
static void reset(uint32_t id) {
  await_starts();
  long long until = now_ms() + KILL_WAIT_MS;
  int left = 1;
  kill(-1, SIGKILL);
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && procs[i].keeper == pid) procs[i].keeper_gone = 1;
      continue;
    }
    if (pid < 0 && errno == ECHILD) {
      left = 0;
      break;
    }
    if (now_ms() >= until) break;
    kill(-1, SIGKILL);
    usleep(1000);
  }
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc *c = &procs[i];
    if (!c->used) continue;
    command_ended(c, 128 + SIGKILL);
    if (!c->reported) send_exit(c, E_RESET);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    close_fd(&c->status_fd);
    close_fd(&c->ready_fd);
    memset(c, 0, sizeof *c);
    c->out_fd = c->err_fd = c->in_fd = c->status_fd = c->term_fd = c->ready_fd = -1;
  }
  /* What was left (stuck in the kernel) is swept on. */
  orphans = left;
  sweep_now = left;
  send_u32(I_RESET, id, (uint32_t)left);
}

static void handle(int type, uint32_t id, const char *p, size_t n) {
  if (type == H_EXEC) return start(id, p, n, NULL);
  if (type == H_RESET) return reset(id);
  if (type == H_EXEC_PTY) {
    if (n < 4) return failed(id, F_REQUEST, EINVAL);
    struct winsize size = {.ws_col = get_u16(p), .ws_row = get_u16(p + 2)};
    if (!size.ws_col || !size.ws_row) return failed(id, F_TERMINAL_SIZE, EINVAL);
    return start(id, p + 4, n - 4, &size);
  }
  struct proc *c = find(id);
  /* Once a command's end is reported, only a kill still reaches what it left running. */
  if (!c || (c->reported && type != H_KILL)) return;
  switch (type) {
  case H_KILL:
    if (n >= 4 && !c->keeper_gone && get_u32(p) >= 1 && get_u32(p) <= 64) {
      if (get_u32(p) == SIGKILL) mark_killed(c);
      kill_tree(c, (int)get_u32(p));
    }
    break;
  case H_STDIN:
    if (c->in_fd >= 0 && !c->in_close_pending) buf_append(&c->in, p, n);
    else send_frame(I_STDIN_GONE, id, NULL, 0);
    break;
  case H_STDIN_CLOSE:
    c->in_close_pending = 1;
    if (c->in.len == 0) close_fd(&c->in_fd);
    break;
  case H_PAUSE:
    c->paused = 1;
    break;
  case H_RESUME:
    c->paused = 0;
    break;
  case H_RESIZE:
    if (n >= 4 && c->term_fd >= 0) {
      struct winsize size = {.ws_col = get_u16(p), .ws_row = get_u16(p + 2)};
      if (size.ws_col && size.ws_row) ioctl(c->term_fd, TIOCSWINSZ, &size);
    }
    break;
  }
}

/*
 * Fd 3 holds /dev/null while there is no channel, so that no other descriptor lands on it: a copy
 * of fd 0, opened in main before any process of the sandbox ran. /dev is the sandbox's to change
 * from then on, and an open of a FIFO put there in /dev/null's place would block the init.
 */
static void reserve_ctl(void) {
  dup3(0, CTL, O_CLOEXEC);
}

/*
 * The agent is gone (or another takes over): its commands run on, unheard, with their stdin at
 * its end, as a pipe from a process that exited. Their ids are cleared (the host's start at 1),
 * so that a new agent's ids never meet them.
 */
static void lose_host(void) {
  if (ctl_open) close(CTL);
  ctl_open = 0;
  reserve_ctl();
  buf_free(&from_host);
  buf_free(&to_host);
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc *c = &procs[i];
    if (!c->used) continue;
    c->id = 0;
    c->reported = 1;
    c->paused = 0;
    buf_free(&c->in);
    close_fd(&c->in_fd);
  }
}

/* A new agent takes the channel over (see init-handover.c for whom it takes it from). */
static void take_channel(void) {
  int conn, fd = handover_receive(listener, &conn);
  if (fd < 0) return;
  lose_host();
  dup2(fd, CTL);
  close(fd);
  fcntl(CTL, F_SETFD, FD_CLOEXEC);
  fcntl(CTL, F_SETFL, O_NONBLOCK);
  ctl_open = 1;
  send_u32(I_READY, 0, filter_length);
  handover_done(conn);
}

static void read_host(void) {
  char chunk[READ_CHUNK];
  ssize_t n = read(CTL, chunk, sizeof chunk);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return lose_host();
  if (n < 0) return;
  buf_append(&from_host, chunk, (size_t)n);
  while (from_host.len >= 9) {
    uint32_t len = get_u32(from_host.data);
    if (len < 5 || len > MAX_FRAME + 5) return lose_host();
    if (from_host.len < 4 + (size_t)len) break;
    handle(from_host.data[4], get_u32(from_host.data + 5), from_host.data + 9, len - 5);
    buf_consume(&from_host, 4 + len);
  }
}

/* One read of a command's stdout or stderr; returns whether it got any bytes. */
static int read_output(struct proc *c, int *fd, int type) {
  char chunk[READ_CHUNK];
  ssize_t n = read(*fd, chunk, sizeof chunk);
  if (n > 0 && !c->reported) send_frame(type, c->id, chunk, (size_t)n);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) close_fd(fd);
  return n > 0;
}

/* Whether the agent holds this command's output back (it paused it, or its queue is full). */
static int held_back(const struct proc *c) {
  return c->paused || to_host.len >= OUT_HIGH;
}

/*
 * Right before a command's exit is reported while its pipes are still open (children of it hold
 * them): sends what they hold now, so that everything written before the command ended goes out
 * before its exit. The grace after the exit is counted from when the exit was seen, and the init
 * may not have polled the pipes since (a stall of the init, or a slow start of another command,
 * in between). Returns 0 if the agent holds the output back: the exit then waits for it.
 */
static int drain_before_exit(struct proc *c) {
  int *fds[2] = {&c->out_fd, &c->err_fd};
  const int types[2] = {I_STDOUT, I_STDERR};
  for (int w = 0; w < 2; w++)
    for (int reads = 0; *fds[w] >= 0 && reads < DRAIN_READS; reads++) {
      if (held_back(c)) return 0;
      if (!read_output(c, fds[w], types[w])) break;
    }
  return 1;
}

static void write_stdin(struct proc *c) {
  ssize_t n = write(c->in_fd, c->in.data, c->in.len);
  if (n > 0) {
    buf_consume(&c->in, (size_t)n);
    send_u32(I_ACK, c->id, (uint32_t)n);
    if (c->in.len == 0 && c->in_close_pending) close_fd(&c->in_fd);
  } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
    buf_free(&c->in);
    close_fd(&c->in_fd);
    send_frame(I_STDIN_GONE, c->id, NULL, 0);
  }
}

static void command_ended(struct proc *c, int status) {
  if (c->exited) return;
  c->exited = 1;
  c->exited_at = now_ms();
  c->status = status;
  if (c->in_fd >= 0 && !c->reported) send_frame(I_STDIN_GONE, c->id, NULL, 0);
  close_fd(&c->in_fd);
  close_fd(&c->term_fd);
  buf_free(&c->in);
}

/* The keeper wrote the command's status. */
static void read_status(struct proc *c) {
  char v[4];
  ssize_t n = read(c->status_fd, v, 4);
  if (n == 4) command_ended(c, (int)get_u32(v));
  if (n == 4 || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) close_fd(&c->status_fd);
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    /* A child that is no keeper is an orphan: its own children came to the init too. A keeper
     * killed may have left some; one that exited by itself had no child left. */
    int keeper = 0;
    for (int i = 0; i < MAX_PROCS; i++) {
      struct proc *c = &procs[i];
      if (!c->used || c->keeper != pid) continue;
      keeper = 1;
      c->keeper_gone = 1;
      /* A report or a status it wrote before it went is still in its pipe. */
      if (c->ready_fd >= 0) read_verdict(c);
      if (c->ready_fd >= 0) start_failed(c, F_LOST, EIO);
      if (c->status_fd >= 0) read_status(c);
      close_fd(&c->status_fd);
      if (!c->exited && !c->killed_at && WIFSIGNALED(status)) {
        /* Killed (by the sandbox) before its command ended: the command and all it started are
         * killed with it. */
        c->keeper_killed = 1;
        mark_killed(c);
      }
      command_ended(c, c->killed_at ? 128 + SIGKILL : WIFEXITED(status) ? 255 : 128 + WTERMSIG(status));
    }
    if (!keeper || WIFSIGNALED(status)) sweep_now = 1;
  }
}

/*
 * Kills what no live keeper holds (see the top of this file), again and again while some is left:
 * a pass cannot tell a process that is dying from one just forked. Nothing else of the sandbox
 * waits on it but the report of a command killed with its keeper.
 */
static void sweep(long long now) {
  if (!sweep_now && (!orphans || now < sweep_at)) return;
  pid_t keepers[MAX_PROCS];
  size_t n = 0;
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].used && !procs[i].keeper_gone) keepers[n++] = procs[i].keeper;
  int found = 0;
  for (int pass = 0; pass < KILL_PASSES; pass++)
    if ((found = signal_orphans(keepers, n, SIGKILL)) <= 0) break;
  if (sweep_now || !orphans) sweep_gap = 5;
  else sweep_gap = sweep_gap * 2 > REKILL_MAX_MS ? REKILL_MAX_MS : sweep_gap * 2;
  sweep_at = now + sweep_gap;
  /* An unreadable /proc counts as one left: it is read again. */
  orphans = found < 0 ? 1 : found;
  sweep_now = 0;
}

/* A command is over once it exited and its pipes closed, or a grace after it exited. */
static void settle(long long now) {
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc *c = &procs[i];
    if (!c->used || !c->exited) continue;
    int drained = c->out_fd < 0 && c->err_fd < 0;
    /* A killed tree is over once its keeper reaped the last of it (or, killed itself, left nothing
     * to the init): until then its dying processes still count against the sandbox's pids limit,
     * and the next command's fork would be refused. */
    int over = c->killed_at ? (c->keeper_gone && !orphans) || now - c->killed_at >= KILL_WAIT_MS : drained || now - c->exited_at >= ORPHAN_GRACE_MS;
    /* A killed command's exit never waits for its output to be taken. */
    if (!c->reported && over && (drained || drain_before_exit(c) || c->killed_at)) send_exit(c, c->keeper_killed ? E_KEEPER_KILLED : 0);
    /* Children left holding the pipes are read on (and unheard) until they close them; the
     * keeper stays known until it is reaped, so that its pid is never taken for another's. */
    if (c->reported && drained && c->keeper_gone) c->used = 0;
  }
}

/*
 * What is left of a killed tree is killed again, more and more seldom, until its keeper is gone.
 * A keeper that has not reaped its tree by the end of the wait is killed too: the sandbox stopped
 * it (it would never report the command's end), or it waits on a process stuck in the kernel. What
 * it leaves is the init's to kill (see sweep).
 */
static void rekill(long long now) {
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc *c = &procs[i];
    if (!c->used || !c->killed_at || c->keeper_gone || now < c->rekill_at) continue;
    kill_tree(c, SIGKILL);
    if (now - c->killed_at >= KILL_WAIT_MS) kill(c->keeper, SIGKILL);
    c->rekill_gap = c->rekill_gap * 2 > REKILL_MAX_MS ? REKILL_MAX_MS : c->rekill_gap * 2;
    c->rekill_at = now + c->rekill_gap;
  }
}

static void flush_host(void) {
  if (!ctl_open || to_host.len == 0) return;
  ssize_t n = write(CTL, to_host.data, to_host.len);
  if (n > 0) buf_consume(&to_host, (size_t)n);
  else if (n < 0 && errno != EAGAIN && errno != EINTR) lose_host();
}

int main(int argc, char **argv) {
  /* Nothing in the sandbox may read our memory or take fd 3 through /proc. */
  prctl(PR_SET_DUMPABLE, 0);
  /* No sandbox runs without its filter: without one, the init exits and the agent's create fails.
   * "allow-setuid" after the listen name: a template whose sudo must work (see load_filter). */
  filter_length = load_filter(FILTER_FD, argc > 2 && strcmp(argv[2], "allow-setuid") == 0);
  if (!filter_length) return 1;
  /* runc handed over its stdio, stderr being a log file on the host: keep none of it. */
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0), dup2(null, 1), dup2(null, 2);
    if (null > 2 && null != CTL) close(null);
  }
  struct stat st;
  ctl_open = fstat(CTL, &st) == 0 && S_ISSOCK(st.st_mode);
  if (ctl_open) {
    fcntl(CTL, F_SETFD, FD_CLOEXEC);
    fcntl(CTL, F_SETFL, O_NONBLOCK);
  } else {
    if (fcntl(CTL, F_GETFD) >= 0) close(CTL);
    reserve_ctl();
  }
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  listener = handover_listen(argc > 1 ? argv[1] : NULL);
  if (ctl_open) send_u32(I_READY, 0, filter_length);

  static struct pollfd fds[3 + 4 * MAX_PROCS];
  static struct {
    struct proc *c;
    int which;
  } owner[3 + 4 * MAX_PROCS];
  for (;;) {
    int n = 0, timeout = -1, ctl_at = -1, listen_at = -1;
    long long now = now_ms();
    fds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    if (listener >= 0) listen_at = n, fds[n++] = (struct pollfd){.fd = listener, .events = POLLIN};
    if (ctl_open) ctl_at = n, fds[n++] = (struct pollfd){.fd = CTL, .events = POLLIN | (to_host.len ? POLLOUT : 0)};
    int reading = to_host.len < OUT_HIGH;
    if (orphans) timeout = (int)(sweep_at > now ? sweep_at - now : 0);
    for (int i = 0; i < MAX_PROCS; i++) {
      struct proc *c = &procs[i];
      if (!c->used) continue;
      if (c->ready_fd >= 0) {
        /* Nothing else of a command is read before its start is told. */
        owner[n].c = c;
        owner[n].which = 4;
        fds[n++] = (struct pollfd){.fd = c->ready_fd, .events = POLLIN};
        long long left = c->start_by > now ? c->start_by - now : 0;
        if (timeout < 0 || left < timeout) timeout = (int)left;
        continue;
      }
      int *fdp[4] = {&c->out_fd, &c->err_fd, &c->in_fd, &c->status_fd};
      for (int w = 0; w < 4; w++) {
        if (*fdp[w] < 0) continue;
        short ev = w == 3 ? POLLIN : w == 2 ? (c->in.len ? POLLOUT : 0) : (!reading || (c->paused && !c->reported) ? 0 : POLLIN);
        if (!ev) continue;
        owner[n].c = c;
        owner[n].which = w;
        fds[n++] = (struct pollfd){.fd = *fdp[w], .events = ev};
      }
      /* Output held back keeps the exit back too: the agent's resume or its reading wakes the poll. */
      if (c->exited && !c->reported && (c->killed_at || !held_back(c))) {
        long long left = c->killed_at ? c->killed_at + KILL_WAIT_MS - now : c->exited_at + ORPHAN_GRACE_MS - now;
        if (left < 0) left = 0;
        if (timeout < 0 || left < timeout) timeout = (int)left;
      }
      if (c->killed_at && !c->keeper_gone) {
        long long left = c->rekill_at > now ? c->rekill_at - now : 0;
        if (timeout < 0 || left < timeout) timeout = (int)left;
      }
    }
    if (poll(fds, (nfds_t)n, timeout) < 0) continue;
    for (int k = 0; k < n; k++) {
      if (!fds[k].revents) continue;
      if (k == 0) {
        struct signalfd_siginfo info;
        while (read(sfd, &info, sizeof info) > 0) {
        }
        reap();
      } else if (k == listen_at) {
        take_channel();
      } else if (k == ctl_at) {
        if (ctl_open && (fds[k].revents & POLLOUT)) flush_host();
        if (ctl_open && (fds[k].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) read_host();
      } else {
        struct proc *c = owner[k].c;
        if (owner[k].which == 0 && c->out_fd == fds[k].fd) read_output(c, &c->out_fd, I_STDOUT);
        else if (owner[k].which == 1 && c->err_fd == fds[k].fd) read_output(c, &c->err_fd, I_STDERR);
        else if (owner[k].which == 2 && c->in_fd == fds[k].fd) write_stdin(c);
        else if (owner[k].which == 3 && c->status_fd == fds[k].fd) read_status(c);
        else if (owner[k].which == 4 && c->ready_fd == fds[k].fd) read_verdict(c);
      }
    }
    reap();
    give_up_starts(now_ms());
    rekill(now_ms());
    sweep(now_ms());
    settle(now_ms());
    flush_host();
  }
}
