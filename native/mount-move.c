/*
 * A resident helper of the agent that moves mounts (mount(2) with MS_MOVE): a spare quota disk,
 * formatted and mounted ahead, is moved under the sandbox that takes it. A `mount --move` run per
 * create cost a process start (about 5 ms on a 2-core host) on every create's path; this costs
 * the system call.
 *
 * Protocol on stdin/stdout, frames as framed-io.h reads and writes them:
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

#include "framed-io.h"

#define MAX_REQUEST (2 * PATH_MAX + 2)

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
    uint32_t len;
    if (read_request_length(&len)) break;
    if (len > MAX_REQUEST) {
      fprintf(stderr, "mount-move: a request of %u bytes is over the limit\n", len);
      return 1;
    }
    if (read_full(0, request, len)) return 1;
    if (serve_one(request, len)) break;
  }
  return 0;
}
