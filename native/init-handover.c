/*
 * How a restarted agent hands the init a new channel. The init listens on an abstract socket
 * named by the agent (its argv[1], "sandstorm-init-<instance id>"; "sandstorm-init" when none is
 * given), which belongs to its network namespace, so to its sandbox alone. The name is the
 * instance's because a restored sandbox's new instance joins the namespace while the old one
 * still runs there. A helper on
 * the host (init-attach.c) joins that namespace only, connects, and sends one end of a socket
 * pair with SCM_RIGHTS. A peer is heard only from outside the sandbox's pid namespace (its pid
 * reads 0 here) and as root: no process of the sandbox can be either.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "init-parts.h"

#define DEFAULT_NAME "sandstorm-init"
#define SEND_WAIT_MS 1000 /* longest wait for a connected helper to send its socket */

/* The listening socket on `name` (NULL: the default), or -1. Made before any process of the sandbox runs, so none holds the name. */
int handover_listen(const char *name) {
  if (!name) name = DEFAULT_NAME;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t name_len = strlen(name);
  if (name_len == 0 || name_len >= sizeof addr.sun_path - 1) return -1;
  memcpy(addr.sun_path + 1, name, name_len);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + name_len);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd >= 0 && (bind(fd, (struct sockaddr *)&addr, len) || listen(fd, 4))) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The socket end a helper sent on `conn` (one byte and one fd), or -1. */
static int received_socket(int conn) {
  struct timeval wait = {.tv_sec = SEND_WAIT_MS / 1000, .tv_usec = (SEND_WAIT_MS % 1000) * 1000};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    char space[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space};
  if (recvmsg(conn, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int))) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  struct stat st;
  if (fstat(fd, &st) || !S_ISSOCK(st.st_mode)) {
    close(fd);
    return -1;
  }
  return fd;
}

/*
 * Accepts one connection and returns the channel it carried, with `*conn` kept open for
 * handover_done; or -1, the connection closed, when the peer is not a root process outside the
 * sandbox or sent no socket.
 */
int handover_receive(int listener, int *conn) {
  *conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  if (*conn < 0) return -1;
  struct ucred peer;
  socklen_t len = sizeof peer;
  int fd = -1;
  if (getsockopt(*conn, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0 && peer.pid == 0 && peer.uid == 0) fd = received_socket(*conn);
  if (fd < 0) close(*conn);
  return fd;
}

/* Tells the helper the init holds the channel now. */
void handover_done(int conn) {
  if (write(conn, "k", 1) != 1) { /* the helper went; the channel is taken either way */ }
  close(conn);
}
