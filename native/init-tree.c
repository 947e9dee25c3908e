/*
 * A command's process tree, found by parent links in the sandbox's /proc: every process that
 * descends from the command's keeper, daemons that left its session included. And what no live
 * keeper holds: the processes that a killed keeper left to the init, and their descendants.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init-parts.h"

struct link {
  pid_t pid, parent;
};

static int by_pid(const void *a, const void *b) {
  return ((const struct link *)a)->pid - ((const struct link *)b)->pid;
}

/* Every live process of the sandbox with its parent, sorted by pid; NULL when /proc fails us. */
static struct link *links(size_t *count) {
  DIR *dir = opendir("/proc");
  if (!dir) return NULL;
  size_t cap = 64;
  struct link *all = malloc(cap * sizeof *all);
  *count = 0;
  struct dirent *e;
  while (all && (e = readdir(dir))) {
    long pid = strtol(e->d_name, NULL, 10);
    if (pid <= 0 || pid > INT_MAX) continue;
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) continue;
    text[n] = 0;
    /* "pid (comm) state ppid ...": the name may hold anything, so read after its last ')' */
    char *close_paren = strrchr(text, ')');
    char state;
    int ppid;
    if (!close_paren || sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2 || state == 'Z') continue;
    if (*count == cap) {
      struct link *more = realloc(all, (cap *= 2) * sizeof *all);
      if (!more) free(all);
      all = more;
      if (!all) break;
    }
    all[(*count)++] = (struct link){(pid_t)pid, ppid};
  }
  closedir(dir);
  if (all) qsort(all, *count, sizeof *all, by_pid);
  return all;
}

static struct link *link_of(struct link *all, size_t count, pid_t pid) {
  struct link key = {pid, 0};
  return bsearch(&key, all, count, sizeof *all, by_pid);
}

static int descends(struct link *all, size_t count, pid_t pid, pid_t ancestor) {
  for (int depth = 0; depth < 4096; depth++) {
    struct link *l = link_of(all, count, pid);
    if (!l || l->parent <= 1) return 0;
    if (l->parent == ancestor) return 1;
    pid = l->parent;
  }
  return 0;
}

int signal_descendants(pid_t ancestor, int sig) {
  size_t count = 0;
  int found = 0;
  struct link *all = links(&count);
  if (!all) return -1;
  for (size_t i = 0; i < count; i++)
    if (descends(all, count, all[i].pid, ancestor)) kill(all[i].pid, sig), found++;
  free(all);
  return found;
}

/* The child of the init that `pid` descends from (itself, if it is one), or 0 when unknown. */
static pid_t top_of(struct link *all, size_t count, pid_t pid) {
  for (int depth = 0; depth < 4096; depth++) {
    struct link *l = link_of(all, count, pid);
    if (!l || l->parent < 1) return 0;
    if (l->parent == 1) return pid;
    pid = l->parent;
  }
  return 0;
}

int signal_orphans(const pid_t *keepers, size_t keeper_count, int sig) {
  size_t count = 0;
  int found = 0;
  struct link *all = links(&count);
  if (!all) return -1;
  for (size_t i = 0; i < count; i++) {
    pid_t top = top_of(all, count, all[i].pid);
    if (!top) continue;
    size_t k = 0;
    while (k < keeper_count && keepers[k] != top) k++;
    if (k == keeper_count) kill(all[i].pid, sig), found++;
  }
  free(all);
  return found;
}
