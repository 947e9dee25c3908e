/*
 * Gives a running sandbox a new root: a restore without a new container.
 *
 *   root-switch PID START_TICKS SETUID NOFILE UPPER WORK LOWER...   (on the host, as root)
 *   root-switch --serve                                              (the same, resident: see serve)
 *
 * PID and START_TICKS name the sandbox's init as runc recorded it; the agent has had the init kill
 * every other process of the sandbox first (sandbox-init.c, RESET), so that nothing of the sandbox
 * runs while this acts in its mount namespace. SETUID is 1 where the template's setuid files are
 * meant to work (the root is then mounted without nosuid). NOFILE is the open-files limit of the
 * sandbox's spec (SOFT:HARD). UPPER and WORK are the new writable layer, LOWER the read-only
 * layers, topmost first; all are host paths.
 *
 * The steps, each on descriptors, never on a path the sandbox could have laid out for us:
 *  0. The init's own settings come back to a fresh sandbox's (see reset_init).
 *  1. The new root overlay is made detached (fsopen, fsmount) from the host's paths.
 *  2. The helper joins the sandbox's mount and IPC namespaces (through a pidfd of the init, so a
 *     pid reused meanwhile is never joined). Every mount point the old root holds gets its
 *     place in the new root, made beneath it with no symlink followed and no mount crossed.
 *  3. The overlay is attached over the old root; every mount of the old root (/proc and /sys with
 *     their masks, Sandstorm's helpers, the template's read-only binds, resolv.conf) moves over
 *     as it is; /dev is made afresh (device nodes, a new devpts instance, /dev/shm) and the IPC
 *     namespace's mqueue filesystem is emptied and mounted at /dev/mqueue.
 *  4. The namespace pivots to the new root (which moves the init's root and cwd along) and the old
 *     root is detached with everything left on it: the old /dev, /dev/shm and /dev/pts.
 *  5. Every System V shared memory segment, message queue and semaphore set is removed.
 *
 * Exit status: 0 once the sandbox runs on the new root; 3 when it refused before changing
 * anything (an unusual mount table, say); 1 when a step failed part way, after which the sandbox
 * must be replaced as a whole; 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "start-ticks.h"

#define REFUSED 3
#define FAILED 1
#define MAX_MOUNTS 256
#define MAX_INFO (1 << 20)
#ifndef MNT_DETACH
#define MNT_DETACH 2
#endif

static const char *stage = "start";
/* In serve mode, the id of the request this process works on; -1 when run from a command line. */
static long long request_id = -1;

static void put32(char *at, uint32_t v) {
  for (int i = 0; i < 4; i++) at[i] = (char)(v >> (8 * i));
}

/* A served request's answer, in one write of at most PIPE_BUF bytes: answers never interleave. */
static void answer(uint32_t id, int status, const char *message) {
  char frame[4096];
  size_t n = strlen(message);
  if (n > sizeof frame - 12) n = sizeof frame - 12;
  put32(frame, id);
  put32(frame + 4, (uint32_t)status);
  put32(frame + 8, (uint32_t)n);
  memcpy(frame + 12, message, n);
  if (write(1, frame, 12 + n) < 0) _exit(1);
}

/* Ends this process with `status`: a command line's exit, or a served request's answer. */
static void finish(int status, const char *message) {
  if (request_id < 0) {
    if (*message) fprintf(stderr, "%s\n", message);
    exit(status);
  }
  answer((uint32_t)request_id, status, message);
  _exit(status);
}

static int give_up(int status, const char *fmt, ...) {
  int saved = errno;
  char message[1024];
  int at = snprintf(message, sizeof message, "root-switch (%s): ", stage);
  va_list ap;
  va_start(ap, fmt);
  at += vsnprintf(message + at, sizeof message - (size_t)at, fmt, ap);
  va_end(ap);
  if (at < (int)sizeof message) snprintf(message + at, sizeof message - (size_t)at, ": %s", saved ? strerror(saved) : "refused");
  finish(status, message);
  return status;
}

static int fs_open(const char *type) { return (int)syscall(SYS_fsopen, type, FSOPEN_CLOEXEC); }
static int fs_config(int fd, unsigned cmd, const char *key, const char *value) { return (int)syscall(SYS_fsconfig, fd, cmd, key, value, 0); }
static int fs_mount(int fd, unsigned attrs) { return (int)syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs); }
static int move_fd(int from, int to) { return (int)syscall(SYS_move_mount, from, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH); }

/* Opens `path` beneath `dir`: no symlink, no magic link, no mount crossed, nothing above `dir`. */
static int open_beneath(int dir, const char *path, int flags, unsigned long long resolve) {
  struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC), .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | resolve};
  return (int)syscall(SYS_openat2, dir, path, &how, sizeof how);
}

/* A filesystem made detached from its options ("key=value" or a flag "key"), or -1. */
static int detached(const char *type, const char *const *options, unsigned attrs) {
  int fs = fs_open(type);
  if (fs < 0) return -1;
  for (; *options; options++) {
    char key[64];
    const char *eq = strchr(*options, '=');
    size_t n = eq ? (size_t)(eq - *options) : strlen(*options);
    if (n >= sizeof key) return errno = EINVAL, -1;
    memcpy(key, *options, n);
    key[n] = 0;
    if (fs_config(fs, eq ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, key, eq ? eq + 1 : NULL)) return -1;
  }
  if (fs_config(fs, FSCONFIG_CMD_CREATE, NULL, NULL)) return -1;
  int mnt = fs_mount(fs, attrs);
  close(fs);
  return mnt;
}

/*
 * The overlay of the new root. A string option holds at most 255 bytes, so the lower layers go one
 * per option (lowerdir+, Linux 6.8); a kernel without it takes them joined, where they fit.
 */
static int new_root(char **lowers, int count, const char *upper, const char *work, int setuid) {
  int fs = fs_open("overlay");
  if (fs < 0 || fs_config(fs, FSCONFIG_SET_STRING, "source", "overlay")) return -1;
  for (int i = 0; i < count; i++) {
    if (fs_config(fs, FSCONFIG_SET_STRING, "lowerdir+", lowers[i]) == 0) continue;
    if (i > 0 || errno != EINVAL) return -1;
    char joined[256];
    size_t at = 0;
    for (int j = 0; j < count; j++) {
      size_t n = strlen(lowers[j]);
      if (at + n + 1 >= sizeof joined) return errno = ENAMETOOLONG, -1;
      if (j) joined[at++] = ':';
      memcpy(joined + at, lowers[j], n);
      at += n;
    }
    joined[at] = 0;
    if (fs_config(fs, FSCONFIG_SET_STRING, "lowerdir", joined)) return -1;
    break;
  }
  if (fs_config(fs, FSCONFIG_SET_STRING, "upperdir", upper) || fs_config(fs, FSCONFIG_SET_STRING, "workdir", work)) return -1;
  /* No sync calls to the writable layer, as at create (overlayMountData); a kernel before 5.10 lacks the flag. */
  if (fs_config(fs, FSCONFIG_SET_FLAG, "volatile", NULL) && errno != EINVAL) return -1;
  if (fs_config(fs, FSCONFIG_CMD_CREATE, NULL, NULL)) return -1;
  int mnt = fs_mount(fs, MOUNT_ATTR_NODEV | (setuid ? 0 : MOUNT_ATTR_NOSUID));
  close(fs);
  return mnt;
}

struct child {
  int id;
  char path[4096]; /* relative to the root, no leading slash */
  int from, to;
};

/* Undoes mountinfo's octal escapes (\040 for a space, and so on) in place. */
static void unescape(char *s) {
  char *out = s;
  for (; *s; s++) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
      *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 3;
    } else {
      *out++ = *s;
    }
  }
  *out = 0;
}

/* The mounts right under the init's root, from its mountinfo (read on the host's /proc). */
static int children_of_root(long pid, struct child *out, int max) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/mountinfo", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) give_up(REFUSED, "reading the sandbox's mount table");
  char *text = malloc(MAX_INFO + 1);
  size_t len = 0;
  ssize_t n;
  while (len < MAX_INFO && (n = read(fd, text + len, MAX_INFO - len)) > 0) len += (size_t)n;
  close(fd);
  text[len] = 0;
  int root = -1, count = 0;
  for (int pass = 0; pass < 2; pass++) {
    char *save = NULL, *copy = strdup(text);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
      int id, parent;
      char point[4096];
      if (sscanf(line, "%d %d %*s %*s %4095s", &id, &parent, point) != 3) continue;
      unescape(point);
      if (pass == 0 && strcmp(point, "/") == 0) {
        if (root >= 0) errno = 0, give_up(REFUSED, "the sandbox's root has mounts stacked on it");
        root = id;
      } else if (pass == 1 && parent == root && id != root) {
        if (count == max) errno = 0, give_up(REFUSED, "the sandbox holds more than %d mounts", max);
        out[count].id = id;
        snprintf(out[count].path, sizeof out[count].path, "%s", point + 1);
        count++;
      }
    }
    free(copy);
  }
  free(text);
  if (root < 0) errno = 0, give_up(REFUSED, "no root in the sandbox's mount table");
  return count;
}

/*
 * Makes `path` beneath the new root a directory (or, with `file`, an empty regular file), with
 * its parents, and opens it. Nothing is followed: a symlink where a mount point goes is removed
 * (the mount would hide it anyway); anything else in the way refuses the switch.
 */
static int make_point(int root, const char *path, int file) {
  char part[4096];
  int dir = dup(root);
  const char *at = path;
  while (*at) {
    const char *slash = strchr(at, '/');
    size_t n = slash ? (size_t)(slash - at) : strlen(at);
    if (n == 0 || n >= sizeof part) return errno = EINVAL, -1;
    memcpy(part, at, n);
    part[n] = 0;
    int last = slash == NULL || slash[1] == 0;
    struct stat st;
    if (fstatat(dir, part, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) && last) {
      if (unlinkat(dir, part, 0)) return -1;
    }
    if (last && file) {
      int made = openat(dir, part, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (made >= 0) close(made);
      else if (errno != EEXIST) return -1;
    } else if (mkdirat(dir, part, 0755) && errno != EEXIST) {
      return -1;
    }
    int next = open_beneath(dir, part, O_PATH | (last && file ? 0 : O_DIRECTORY), RESOLVE_NO_XDEV);
    close(dir);
    if (next < 0) return -1;
    if (last && file && (fstat(next, &st) || !S_ISREG(st.st_mode))) return close(next), errno = EEXIST, -1;
    dir = next;
    at += n + (slash ? 1 : 0);
  }
  return dir;
}

/* A fresh /dev as runc makes one: the devices the sandbox's device cgroup allows, and links. */
static int fresh_dev(void) {
  const char *const options[] = {"source=tmpfs", "mode=755", "size=65536k", NULL};
  int dev = detached("tmpfs", options, MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME);
  if (dev < 0) return -1;
  static const struct {
    const char *name;
    unsigned major, minor;
  } nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++)
    if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor))) return -1;
  static const char *const links[][2] = {{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
                                         {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}};
  for (size_t i = 0; i < sizeof links / sizeof *links; i++)
    if (symlinkat(links[i][0], dev, links[i][1])) return -1;
  for (const char *const *d = (const char *const[]){"pts", "shm", "mqueue", NULL}; *d; d++)
    if (mkdirat(dev, *d, 0755)) return -1;
  return dev;
}

/* Empties the IPC namespace's POSIX message queues, through a mount of its mqueue filesystem. */
static int empty_mqueue(int mq) {
  int fd = openat(mq, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *dir = fd < 0 ? NULL : fdopendir(fd);
  if (!dir) return -1;
  struct dirent *e;
  while ((e = readdir(dir)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && unlinkat(mq, e->d_name, 0)) return closedir(dir), -1;
  closedir(dir);
  return 0;
}

/* Removes every System V IPC object of the namespace joined. */
static void empty_sysv(void) {
  struct shm_info shm;
  int top = shmctl(0, SHM_INFO, (struct shmid_ds *)&shm);
  for (int i = 0; i <= top; i++) {
    struct shmid_ds ds;
    int id = shmctl(i, SHM_STAT_ANY, &ds);
    if (id >= 0) shmctl(id, IPC_RMID, NULL);
  }
  struct msginfo msg;
  top = msgctl(0, MSG_INFO, (struct msqid_ds *)&msg);
  for (int i = 0; i <= top; i++) {
    struct msqid_ds ds;
    int id = msgctl(i, MSG_STAT_ANY, &ds);
    if (id >= 0) msgctl(id, IPC_RMID, NULL);
  }
  struct seminfo sem;
  top = semctl(0, 0, SEM_INFO, &sem);
  for (int i = 0; i <= top; i++) {
    struct semid_ds ds;
    int id = semctl(i, 0, SEM_STAT_ANY, &ds);
    if (id >= 0) semctl(id, 0, IPC_RMID);
  }
}

/*
 * Root in the sandbox has the init's uid, so it may change the init's resource limits, nice, I/O
 * priority, scheduling policy, CPU affinity and OOM score (prlimit, renice, ionice, chrt, taskset,
 * /proc/1/oom_score_adj), and lacks the capabilities to raise any of them back. Every later
 * command inherits them from the init: a sandbox restored to a clean snapshot would still fork
 * under an NPROC of 1, say. They come back as a fresh sandbox has them: this helper's own, which
 * it shares with every runc the agent starts, but for the open-files limit, which the spec sets.
 */
static int reset_init(long pid, const struct rlimit *nofile) {
  for (int r = 0; r < RLIM_NLIMITS; r++) {
    struct rlimit own;
    if (getrlimit(r, &own)) return -1;
    if (prlimit((pid_t)pid, r, r == RLIMIT_NOFILE ? nofile : &own, NULL)) return -1;
  }
  struct sched_param param;
  int policy = sched_getscheduler(0);
  if (policy < 0 || sched_getparam(0, &param) || sched_setscheduler((pid_t)pid, policy, &param)) return -1;
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  if ((nice == -1 && errno) || setpriority(PRIO_PROCESS, (id_t)pid, nice)) return -1;
  long ioprio = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
  if (ioprio < 0 || syscall(SYS_ioprio_set, 1, (pid_t)pid, ioprio)) return -1;
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) || sched_setaffinity((pid_t)pid, sizeof cpus, &cpus)) return -1;
  char own[32] = {0}, path[64];
  int fd = open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, own, sizeof own - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return -1;
  snprintf(path, sizeof path, "/proc/%ld/oom_score_adj", pid);
  fd = open(path, O_WRONLY | O_CLOEXEC);
  n = fd < 0 ? -1 : write(fd, own, strlen(own));
  if (fd >= 0) close(fd);
  return n < 0 ? -1 : 0;
}

static int switch_root(int argc, char **argv) {
  char *end = NULL;
  long pid = argc >= 8 ? strtol(argv[1], &end, 10) : 0;
  long long ticks = argc >= 8 && *end == 0 ? strtoll(argv[2], &end, 10) : -1;
  struct rlimit nofile = {0, 0};
  if (ticks >= 0 && *end == 0) nofile.rlim_cur = strtoull(argv[4], &end, 10);
  if (ticks >= 0 && *end == ':') nofile.rlim_max = strtoull(end + 1, &end, 10);
  if (pid <= 1 || ticks < 0 || *end != 0 || !nofile.rlim_cur || nofile.rlim_cur > nofile.rlim_max || (strcmp(argv[3], "0") && strcmp(argv[3], "1"))) {
    finish(2, "usage: root-switch PID START_TICKS SETUID(0|1) NOFILE(SOFT:HARD) UPPER WORK LOWER... | --serve");
  }
  int setuid_ok = argv[3][0] == '1';
  umask(0);

  stage = "the init";
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (pidfd < 0) give_up(REFUSED, "pidfd_open");
  static struct child kids[MAX_MOUNTS];
  int count = children_of_root(pid, kids, MAX_MOUNTS);
  if (start_ticks(pid) != ticks) errno = ESRCH, give_up(REFUSED, "the sandbox's init is gone");

  stage = "the init's settings";
  if (reset_init(pid, &nofile)) give_up(REFUSED, "resetting the init's limits and priorities");
  if (start_ticks(pid) != ticks) errno = ESRCH, give_up(REFUSED, "the sandbox's init is gone");

  stage = "the new root";
  int root = new_root(argv + 7, argc - 7, argv[5], argv[6], setuid_ok);
  if (root < 0) give_up(REFUSED, "mounting the overlay of the new root");

  stage = "joining the sandbox";
  if (setns(pidfd, CLONE_NEWNS | CLONE_NEWIPC)) give_up(REFUSED, "setns");
  int old = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (old < 0) give_up(REFUSED, "opening the old root");

  /* Every mount of the old root but /dev keeps its place: its mount point is made beneath the new
   * root (no symlink followed, no mount crossed) before anything is attached. */
  stage = "mount points";
  int dev_at = -1;
  for (int i = 0; i < count; i++) {
    kids[i].from = open_beneath(old, kids[i].path, O_PATH, 0);
    if (kids[i].from < 0) give_up(REFUSED, "opening the mount at /%s", kids[i].path);
    struct statx sx;
    if (statx(kids[i].from, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) || !(sx.stx_mask & STATX_MNT_ID) || sx.stx_mnt_id != (unsigned long long)kids[i].id)
      errno = 0, give_up(REFUSED, "/%s is not the mount the table names (mounts stacked there?)", kids[i].path);
    if (strcmp(kids[i].path, "dev") == 0) dev_at = i;
    kids[i].to = make_point(root, kids[i].path, !S_ISDIR(sx.stx_mode));
    if (kids[i].to < 0) give_up(REFUSED, "making /%s in the new root", kids[i].path);
  }
  if (dev_at < 0) errno = 0, give_up(REFUSED, "the sandbox has no /dev mount");

  stage = "the new /dev";
  int dev = fresh_dev();
  const char *const pts_options[] = {"source=devpts", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5", "max=256", NULL};
  const char *const shm_options[] = {"source=shm", "mode=1777", "size=65536k", NULL};
  const char *const mq_options[] = {"source=mqueue", NULL};
  int pts = detached("devpts", pts_options, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  int shm = detached("tmpfs", shm_options, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV);
  /* Made after joining the IPC namespace: this is its mqueue filesystem. */
  int mq = detached("mqueue", mq_options, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV);
  if (dev < 0 || pts < 0 || shm < 0 || mq < 0) give_up(REFUSED, "making /dev");
  if (empty_mqueue(mq)) give_up(REFUSED, "emptying the POSIX message queues");

  /* From here on the sandbox is changed: a failure leaves it for the agent to replace. */
  stage = "attaching";
  if (syscall(SYS_move_mount, root, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH)) give_up(FAILED, "attaching the new root");
  for (int i = 0; i < count; i++) {
    if (i == dev_at) continue;
    if (move_fd(kids[i].from, kids[i].to)) give_up(FAILED, "moving the mount at /%s", kids[i].path);
  }
  if (move_fd(dev, kids[dev_at].to)) give_up(FAILED, "attaching /dev");
  const char *const in_dev[] = {"pts", "shm", "mqueue"};
  int fds[] = {pts, shm, mq};
  for (int i = 0; i < 3; i++) {
    int at = open_beneath(dev, in_dev[i], O_PATH | O_DIRECTORY, RESOLVE_NO_XDEV);
    if (at < 0 || move_fd(fds[i], at)) give_up(FAILED, "attaching /dev/%s", in_dev[i]);
    close(at);
  }

  stage = "pivot";
  if (fchdir(root) || syscall(SYS_pivot_root, ".", ".")) give_up(FAILED, "pivot_root");
  if (syscall(SYS_umount2, ".", MNT_DETACH)) give_up(FAILED, "detaching the old root");
  if (chdir("/")) give_up(FAILED, "chdir");

  stage = "IPC";
  empty_sysv();
  return 0;
}

/*
 * Resident for an agent, so that a restore forks neither the agent nor a shell: requests come on
 * stdin (u32 id, u32 length, then the arguments of the command line, each NUL-terminated), each
 * is done by a child forked for it (a process that joined a sandbox's namespaces is never used
 * again), so several run at once, and each child answers on stdout (u32 id, u32 exit status, u32
 * length, message). Ends at the end of stdin.
 */
static int serve(void) {
  signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
  for (;;) {
    char head[8];
    size_t got = 0;
    while (got < sizeof head) {
      ssize_t n = read(0, head + got, sizeof head - got);
      if (n <= 0) return n == 0 && got == 0 ? 0 : 2;
      got += (size_t)n;
    }
    uint32_t id = (uint32_t)(unsigned char)head[0] | (uint32_t)(unsigned char)head[1] << 8 | (uint32_t)(unsigned char)head[2] << 16 | (uint32_t)(unsigned char)head[3] << 24;
    uint32_t length = (uint32_t)(unsigned char)head[4] | (uint32_t)(unsigned char)head[5] << 8 | (uint32_t)(unsigned char)head[6] << 16 | (uint32_t)(unsigned char)head[7] << 24;
    if (length == 0 || length > (1u << 16)) return 2;
    char *args = malloc(length + 1);
    for (got = 0; got < length;) {
      ssize_t n = read(0, args + got, length - got);
      if (n <= 0) return 2;
      got += (size_t)n;
    }
    args[length] = 0;
    char *argv[512];
    int argc = 0;
    argv[argc++] = "root-switch";
    for (char *at = args; at < args + length && argc < 511; at += strlen(at) + 1) argv[argc++] = at;
    argv[argc] = NULL;
    pid_t child = fork();
    if (child == 0) {
      signal(SIGCHLD, SIG_DFL);
      request_id = id;
      finish(switch_root(argc, argv), "");
    }
    if (child < 0) {
      char message[128];
      snprintf(message, sizeof message, "root-switch: fork: %s", strerror(errno));
      answer(id, REFUSED, message);
    }
    free(args);
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--serve") == 0) return serve();
  return switch_root(argc, argv);
}
