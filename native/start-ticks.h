/*
 * The start time of a process, as runc records its container's init: the host helpers check it
 * against a pidfd's process, so that a pid reused meanwhile is never taken for the sandbox's init.
 */
#ifndef SANDSTORM_START_TICKS_H
#define SANDSTORM_START_TICKS_H
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Field 22 of /proc/PID/stat (the start time in clock ticks), or -1. */
static long long start_ticks(long pid) {
  char path[64], text[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return -1;
  text[n] = 0;
  /* The name may hold anything: the fields are counted after its last ')'. */
  char *at = strrchr(text, ')');
  if (!at) return -1;
  for (int field = 2; field < 22; field++) {
    at = strchr(at + 1, ' ');
    if (!at) return -1;
  }
  return strtoll(at + 1, NULL, 10);
}

#endif
