/*
 * A resident helper of the agent that moves mounts (mount(2) with MS_MOVE): a spare quota disk,
 * formatted and mounted ahead, is moved under the sandbox that takes it. A `mount --move` run per
 * create cost a process start (about 5 ms on a 2-core host) on every create's path; this costs
 * the system call.
 *
 * Protocol on stdin/stdout, both ways a frame of a 4-byte little-endian length and its bytes:
 *   request:  SOURCE NUL TARGET NUL (absolute paths, each under PATH_MAX)
 *   reply:    one status byte ('0' moved, '1' refused) and then why it was refused
 * It exits when stdin ends. Run on the host only, by root, for the agent: both paths are the
 * agent's own (its spare disks' dir and its writable layers' dir), never one a sandbox controls.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define MAX_REQUEST (2 * PATH_MAX + 2)

static int read_full(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int reply(char status, const char *text) {
  size_t len = strlen(text);
  uint32_t total = (uint32_t)(len + 1);
  unsigned char head[5] = {total & 0xff, (total >> 8) & 0xff, (total >> 16) & 0xff, (total >> 24) & 0xff, (unsigned char)status};
  return write_full(1, head, sizeof head) || write_full(1, text, len) ? -1 : 0;
}

/* Moves the mount at the request's SOURCE to its TARGET; the reply's text says why not. */
static int serve_one(char *request, uint32_t len) {
  char why[2 * PATH_MAX + 64];
  // Two NUL-terminated absolute paths and nothing after them.
  const char *source = request;
  size_t source_len = strnlen(source, len);
  if (source_len == len || source[0] != '/') return reply('1', "expected an absolute source path ending in NUL");
  const char *target = request + source_len + 1;
  size_t rest = len - source_len - 1;
  size_t target_len = strnlen(target, rest);
  if (target_len + 1 != rest || target[0] != '/') return reply('1', "expected an absolute target path ending in NUL, and nothing after it");
  if (mount(source, target, NULL, MS_MOVE, NULL) != 0) {
    snprintf(why, sizeof why, "moving the mount at %s to %s: %s", source, target, strerror(errno));
    return reply('1', why);
  }
  return reply('0', "");
}

int main(void) {
  static char request[MAX_REQUEST];
  for (;;) {
    unsigned char head[4];
    if (read_full(0, head, sizeof head)) break;
    uint32_t len = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 | (uint32_t)head[3] << 24;
    if (len > MAX_REQUEST) {
      fprintf(stderr, "mount-move: a request of %u bytes is over the limit\n", len);
      return 1;
    }
    if (read_full(0, request, len)) return 1;
    if (serve_one(request, len)) break;
  }
  return 0;
}
