/*
 * Loads a sandbox's seccomp filter, read to its end from a descriptor, before anything else runs
 * in the sandbox: every command is forked from the init and inherits it. runc would compile the
 * same profile with libseccomp on every start (6-9 ms); the agent compiles it once
 * (seccomp-bpf.c) and hands it to each init.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init-parts.h"

#define READ_WAIT_MS 1000 /* longest wait for the next part of the program */

/*
 * Takes CAP_SYS_ADMIN out of the bounding, effective, permitted and inheritable sets and checks
 * that it is gone: 0 when it is. runc gave it to this process only so that the filter could be
 * loaded without no_new_privs; no process of the sandbox ever runs with it, or can gain it again
 * through a setuid file (execve grants no more than the bounding set).
 */
static int drop_sys_admin(void) {
  struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  const int word = CAP_TO_INDEX(CAP_SYS_ADMIN);
  const uint32_t bit = CAP_TO_MASK(CAP_SYS_ADMIN);
  if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0)) return -1;
  if (syscall(SYS_capget, &head, data)) return -1;
  data[word].effective &= ~bit;
  data[word].permitted &= ~bit;
  data[word].inheritable &= ~bit;
  if (syscall(SYS_capset, &head, data)) return -1;
  if (syscall(SYS_capget, &head, data)) return -1;
  if ((data[word].effective | data[word].permitted | data[word].inheritable) & bit) return -1;
  if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0) return -1;
  return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_SYS_ADMIN, 0, 0) == 0 ? 0 : -1;
}

/* The filter's length in instructions, or 0 when there is no valid filter to load. */
uint32_t load_filter(int fd, int allow_setuid) {
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
  if (!allow_setuid && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return 0;
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog)) return 0;
  if (allow_setuid && drop_sys_admin()) return 0;
  return fprog.len;
}
