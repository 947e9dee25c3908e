/*
 * Sends a descriptor over a unix socket (SCM_RIGHTS), attached to the first byte of a message:
 * how the host helpers hand a socket to a sandbox's init, or a state file to a QEMU monitor.
 */
#ifndef SANDSTORM_SEND_FD_H
#define SANDSTORM_SEND_FD_H
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Sends byte `*first` with `fd` attached; 0 on success. */
static int send_fd(int conn, int fd, const char *first) {
  struct iovec iov = {.iov_base = (void *)first, .iov_len = 1};
  union {
    char space[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  return sendmsg(conn, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}
#endif
