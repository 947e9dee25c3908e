/*
 * Hands a restarted agent's channel to the init of a running sandbox (see sandbox-init.c).
 *
 *   init-attach PID START_TICKS [NAME]   (on the host, as root; the socket to hand over on fd 3)
 *
 * PID and START_TICKS name the init as runc recorded it. The helper takes a pidfd of it, checks
 * that the pid still belongs to that process, and joins its network namespace through the pidfd,
 * so that a pid reused meanwhile is never joined. Only the network namespace: the init must see
 * this process outside its pid namespace, which no process of the sandbox can be. The helper
 * then connects to the init's abstract socket (NAME, as the init was given it; "sandstorm-init"
 * by default), checks that the listener is that very init, sends
 * fd 3 and waits for the init's word. Exit 0 once the init holds the channel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "send-fd.h"
#include "start-ticks.h"

#define CHANNEL 3
#define DEFAULT_NAME "sandstorm-init"
#define WORD_WAIT_S 2

static int fail(const char *what) {
  fprintf(stderr, "init-attach: %s: %s\n", what, strerror(errno));
  return 1;
}


int main(int argc, char **argv) {
  char *end;
  int args_ok = argc == 3 || argc == 4;
  long pid = args_ok ? strtol(argv[1], &end, 10) : 0;
  long long ticks = args_ok && *end == 0 ? strtoll(argv[2], &end, 10) : -1;
  const char *name = argc == 4 ? argv[3] : DEFAULT_NAME;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t name_len = strlen(name);
  if (pid <= 1 || ticks < 0 || *end != 0 || name_len == 0 || name_len >= sizeof addr.sun_path - 1) {
    fprintf(stderr, "usage: init-attach PID START_TICKS [NAME] (the channel on fd 3)\n");
    return 2;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (pidfd < 0) return fail("pidfd_open");
  if (start_ticks(pid) != ticks) {
    errno = ESRCH;
    return fail("the sandbox's init is gone");
  }
  if (setns(pidfd, CLONE_NEWNET)) return fail("joining the sandbox's network namespace");

  int conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memcpy(addr.sun_path + 1, name, name_len);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + name_len);
  /* The sandbox's processes can fill the listener's backlog with connects of their own: a blocking
     connect would then wait for ever. SO_SNDTIMEO bounds a unix socket's connect. */
  struct timeval connect_wait = {.tv_sec = WORD_WAIT_S};
  if (conn >= 0) setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &connect_wait, sizeof connect_wait);
  if (conn < 0 || connect(conn, (struct sockaddr *)&addr, len)) return fail("connecting to the sandbox's init");

  struct ucred peer;
  socklen_t peer_len = sizeof peer;
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len)) return fail("SO_PEERCRED");
  if (peer.pid != (pid_t)pid) {
    errno = EPERM;
    return fail("the socket's listener is not the sandbox's init");
  }
  if (send_fd(conn, CHANNEL, "c")) return fail("sending the channel");
  struct timeval wait = {.tv_sec = WORD_WAIT_S};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  char word = 0;
  if (read(conn, &word, 1) != 1 || word != 'k') {
    if (errno == 0) errno = EPROTO;
    return fail("the sandbox's init did not take the channel");
  }
  return 0;
}
