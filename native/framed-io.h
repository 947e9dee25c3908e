/*
 * The frames of the agent's resident helpers on stdin/stdout (nft-apply, mount-move), read by
 * src/shared/framed-helper.ts: both ways a 4-byte little-endian length and its bytes; a reply's
 * bytes are one status byte ('0' done, '1' refused) and a text.
 */
#ifndef SANDSTORM_FRAMED_IO_H
#define SANDSTORM_FRAMED_IO_H
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* Reads exactly `len` bytes; -1 at the end of input or on an error. */
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

/* Writes all `len` bytes; -1 on an error. */
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

/* Reads the next request's length from stdin; -1 at the end of input. */
static int read_request_length(uint32_t *len) {
  unsigned char head[4];
  if (read_full(0, head, sizeof head)) return -1;
  *len = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 | (uint32_t)head[3] << 24;
  return 0;
}

/* Writes one reply to stdout: `status` and `text`; -1 on an error. */
static int reply(char status, const char *text) {
  size_t len = strlen(text);
  uint32_t total = (uint32_t)(len + 1);
  unsigned char head[5] = {total & 0xff, (total >> 8) & 0xff, (total >> 16) & 0xff, (total >> 24) & 0xff, (unsigned char)status};
  return write_full(1, head, sizeof head) || write_full(1, text, len) ? -1 : 0;
}
#endif
