/*
 * Hands an open file to a QEMU through one of its QMP monitors, then runs one command there.
 *
 *   qmp-fd SOCKET NAME COMMAND   (on the host, as root; the file to hand over on fd 3)
 *
 * A VM's QEMU runs as a uid of its own in an empty chroot, so it can open no file after its start;
 * the agent opens a machine state file itself and this helper gives it to QEMU as the named fd
 * NAME (QMP's `getfd`, the fd sent with SCM_RIGHTS). COMMAND is the QMP command that uses it
 * (`migrate fd:NAME`, `migrate-incoming fd:NAME`): a named fd belongs to the monitor it was sent
 * to, so the command goes to the same one. Prints the command's answer; exit 0 when it returned,
 * 1 with QEMU's error (or what failed) on stderr otherwise. Every wait is bounded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "send-fd.h"

#define HANDED 3
#define WAIT_S 10
/* QEMU's answers here are a few hundred bytes; a longer line is not QEMU's. */
#define LINE_MAX_BYTES 65536

static char buf[LINE_MAX_BYTES];
static size_t have;

static int fail(const char *what) {
  fprintf(stderr, "qmp-fd: %s: %s\n", what, errno ? strerror(errno) : "unexpected answer");
  return 1;
}

/* Reads one line (without its newline) into *line; 0 on success. */
static int read_line(int conn, char **line) {
  static size_t consumed;
  if (consumed) {
    memmove(buf, buf + consumed, have - consumed);
    have -= consumed;
    consumed = 0;
  }
  for (;;) {
    char *nl = memchr(buf, '\n', have);
    if (nl) {
      *nl = '\0';
      *line = buf;
      consumed = (size_t)(nl - buf) + 1;
      return 0;
    }
    if (have == sizeof buf) {
      errno = EMSGSIZE;
      return -1;
    }
    ssize_t n = read(conn, buf + have, sizeof buf - have);
    if (n <= 0) {
      if (n == 0) errno = ECONNRESET;
      return -1;
    }
    have += (size_t)n;
  }
}

/* Reads lines until an answer (events are skipped); 0 when it is a return, 1 an error, -1 a failure. */
static int read_answer(int conn, char **line) {
  for (;;) {
    if (read_line(conn, line) != 0) return -1;
    if (strncmp(*line, "{\"return\"", 9) == 0) return 0;
    errno = 0;
    if (strncmp(*line, "{\"error\"", 8) == 0) return 1;
    if (strncmp(*line, "{\"timestamp\"", 12) != 0) return -1;
  }
}

static int send_all(int conn, const char *text) {
  size_t len = strlen(text);
  while (len > 0) {
    ssize_t n = send(conn, text, len, MSG_NOSIGNAL);
    if (n <= 0) return -1;
    text += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Sends `text` with fd HANDED attached to its first byte, the rest after it. */
static int send_with_fd(int conn, const char *text) {
  if (send_fd(conn, HANDED, text) != 0) return -1;
  return send_all(conn, text + 1);
}

static int valid_name(const char *name) {
  size_t len = strlen(name);
  if (len == 0 || len > 64) return 0;
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) return 0;
  return 1;
}

int main(int argc, char **argv) {
  /* One bound on the whole: each wait below is bounded, but a monitor sending events could restart them. */
  alarm(30);
  if (argc != 4 || !valid_name(argv[2])) {
    fprintf(stderr, "usage: qmp-fd SOCKET NAME COMMAND (NAME: a-z, 0-9 and -; the file on fd 3)\n");
    return 2;
  }
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(argv[1]) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return fail("monitor socket");
  }
  strcpy(addr.sun_path, argv[1]);
  int conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (conn < 0) return fail("socket");
  struct timeval wait = {.tv_sec = WAIT_S};
  if (setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait) != 0 || setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof wait) != 0) return fail("socket timeouts");
  if (connect(conn, (struct sockaddr *)&addr, sizeof addr) != 0) return fail("connect to the monitor");

  char *line;
  if (read_line(conn, &line) != 0) return fail("the monitor's greeting");
  errno = 0;
  if (strncmp(line, "{\"QMP\"", 6) != 0) return fail("the monitor's greeting");
  if (send_all(conn, "{\"execute\":\"qmp_capabilities\"}\n") != 0) return fail("qmp_capabilities");
  if (read_answer(conn, &line) != 0) return fail("qmp_capabilities");

  char getfd[160];
  snprintf(getfd, sizeof getfd, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"%s\"}}\n", argv[2]);
  if (send_with_fd(conn, getfd) != 0) return fail("getfd");
  int got = read_answer(conn, &line);
  if (got != 0) {
    if (got == 1) fprintf(stderr, "qmp-fd: getfd: %s\n", line);
    return got == 1 ? 1 : fail("getfd");
  }

  if (send_all(conn, argv[3]) != 0 || send_all(conn, "\n") != 0) return fail("the command");
  got = read_answer(conn, &line);
  if (got == -1) return fail("the command's answer");
  if (got == 1) {
    fprintf(stderr, "qmp-fd: %s\n", line);
    return 1;
  }
  printf("%s\n", line);
  return 0;
}
