/*
 * A resident launcher of `runc run`. The agent forks this small process once; each runc then forks
 * from it, not from the agent. A fork of the agent (a Node process of a hundred MiB and more)
 * blocks its event loop for 2 to 6 ms, and every sandbox's commands wait behind that.
 *
 * The launcher starts a program with fd 3 connected to a unix socket that the agent listens on (the
 * container init's channel, which runc passes on with --preserve-fds), fd 4 a file (the seccomp
 * program the init reads to its end), stderr a log file, stdin and stdout /dev/null, no other fd,
 * and default signal handling. It reports how each ended.
 *
 * Requests on stdin, each a list of NUL-terminated fields:
 *   run  <tag> <n> <socket path> <filter path> <log path> <program> <arg>...   (n fields after it)
 *   kill <tag> 0                                                                (SIGKILL to that run)
 * Answers on stdout, one line each:
 *   exit <tag> <status>   the program's exit code, or 128 + the signal that ended it;
 *                         127 when it could not be started (why: in its log)
 *   fail <tag> <reason>   nothing was started
 * At the end of stdin no run is started; the launcher exits once the runs in flight have ended.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_RUNS 4096
#define MAX_FIELDS 64
#define TAG_MAX 64
#define INPUT_MAX (256 * 1024)

struct run {
  pid_t pid;
  char tag[TAG_MAX];
};

static struct run runs[MAX_RUNS];
static int in_flight;

static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void answer(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  /* The agent may be gone (EPIPE, SIGPIPE ignored): the runs still end and are reaped. */
  for (int off = 0; off < n;) {
    ssize_t w = write(1, line + off, (size_t)(n - off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    off += (int)w;
  }
}

/* Moves fd above the ones a child sets up, close-on-exec; returns the new fd or -1. */
static int lift(int fd) {
  if (fd < 0) return -1;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return high;
}

static void child_fail(const char *what, const char *path) {
  dprintf(2, "runc launcher: %s %s: %s\n", what, path, strerror(errno));
  _exit(127);
}

/* In the forked child: fds 0-4 as promised, then the program. Never returns. */
static void start_child(char **f, int n) {
  const char *sock_path = f[0], *filter_path = f[1], *log_path = f[2];
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);

  int log = lift(open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (log < 0) child_fail("open log", log_path);
  if (dup2(log, 2) < 0) _exit(127);
  int null = lift(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (null < 0) child_fail("open", "/dev/null");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    child_fail("connect", sock_path);
  }
  strcpy(addr.sun_path, sock_path);
  int sock = lift(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) child_fail("connect", sock_path);
  int filter = lift(open(filter_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (filter < 0) child_fail("open filter", filter_path);
  if (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(sock, 3) < 0 || dup2(filter, 4) < 0) child_fail("dup2", "0-4");
  /* Whatever else is open (none should be: all is close-on-exec) does not reach the program. */
  syscall(SYS_close_range, 5U, ~0U, 0U);
  f[n] = NULL;
  execvp(f[3], &f[3]);
  child_fail("exec", f[3]);
}

static void handle(char **f, int nf) {
  const char *cmd = f[0], *tag = f[1];
  if (strlen(tag) >= TAG_MAX) return;
  char **rest = &f[3];
  int n = nf - 3;
  if (strcmp(cmd, "kill") == 0) {
    for (int i = 0; i < MAX_RUNS; i++)
      if (runs[i].pid > 0 && strcmp(runs[i].tag, tag) == 0) kill(runs[i].pid, SIGKILL);
    return;
  }
  if (strcmp(cmd, "run") != 0 || n < 4) {
    answer("fail %s bad request\n", tag);
    return;
  }
  int slot = -1;
  for (int i = 0; i < MAX_RUNS && slot < 0; i++)
    if (runs[i].pid == 0) slot = i;
  if (slot < 0) {
    answer("fail %s too many runs at once\n", tag);
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    answer("fail %s fork: %s\n", tag, strerror(errno));
    return;
  }
  if (pid == 0) start_child(rest, n);
  runs[slot].pid = pid;
  strcpy(runs[slot].tag, tag);
  in_flight++;
}

/* Parses whole requests from buf[0..len); returns how many bytes were used. */
static size_t parse(char *buf, size_t len) {
  size_t used = 0;
  for (;;) {
    char *f[MAX_FIELDS + 1];
    size_t at = used;
    int nf = 0, want = 3;
    while (nf < want) {
      char *end = memchr(buf + at, '\0', len - at);
      if (!end) return used;
      f[nf++] = buf + at;
      at = (size_t)(end - buf) + 1;
      if (nf == 3) {
        int extra = atoi(f[2]);
        if (extra < 0 || extra > MAX_FIELDS - 3) extra = 0;
        want = 3 + extra;
      }
    }
    handle(f, nf);
    used = at;
  }
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_RUNS; i++) {
      if (runs[i].pid != pid) continue;
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      answer("exit %s %d\n", runs[i].tag, code);
      runs[i].pid = 0;
      in_flight--;
    }
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    perror("runc launcher: signalfd");
    return 1;
  }
  static char buf[INPUT_MAX];
  size_t len = 0;
  int open_input = 1;
  while (open_input || in_flight > 0) {
    struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = open_input ? 0 : -1, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("runc launcher: poll");
      return 1;
    }
    if (p[0].revents) {
      struct signalfd_siginfo info;
      while (read(sfd, &info, sizeof info) == sizeof info) {
      }
      reap();
    }
    if (p[1].revents) {
      ssize_t r = read(0, buf + len, sizeof buf - len);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        open_input = 0;
        continue;
      }
      len += (size_t)r;
      size_t used = parse(buf, len);
      memmove(buf, buf + used, len - used);
      len -= used;
      /* A request larger than the buffer can never be whole: drop it rather than spin. */
      if (len == sizeof buf) len = 0;
    }
  }
  return 0;
}
