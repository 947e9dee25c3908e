/*
 * Loads a sandbox's seccomp filter, read to its end from a descriptor, before anything else runs
 * in the sandbox: every command is forked from the init and inherits it. runc would compile the
 * same profile with libseccomp on every start (6-9 ms); the agent compiles it once
 * (seccomp-bpf.c) and hands it to each init.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init-parts.h"

#define READ_WAIT_MS 1000 /* longest wait for the next part of the program */

/* The filter's length in instructions, or 0 when there is no valid filter to load. */
uint32_t load_filter(int fd) {
  static struct sock_filter program[BPF_MAXINSNS + 1];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, (char *)program + len, sizeof program - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd wait = {.fd = fd, .events = POLLIN};
      if (poll(&wait, 1, READ_WAIT_MS) == 1) continue;
    }
    if (n < 0) len = 0;
    if (n <= 0) break;
    len += (size_t)n;
    if (len == sizeof program) { /* longer than the kernel takes */
      len = 0;
      break;
    }
  }
  close(fd);
  if (len == 0 || len % sizeof *program) return 0;
  struct sock_fprog fprog = {.len = (unsigned short)(len / sizeof *program), .filter = program};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog)) return 0;
  return fprog.len;
}
