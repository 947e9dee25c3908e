/* The parts of the sandbox's init (sandbox-init.c) that stand on their own. */
#ifndef SANDSTORM_INIT_PARTS_H
#define SANDSTORM_INIT_PARTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* init-filter.c: loads the seccomp program read to its end from `fd`; its length, or 0. With
 * `allow_setuid` the filter is loaded without no_new_privs (with CAP_SYS_ADMIN, which the init then
 * drops from every set), so that setuid files such as sudo work under it. */
uint32_t load_filter(int fd, int allow_setuid);

/* init-tree.c: signals every process of the sandbox that descends from `ancestor`; how many, or -1. */
int signal_descendants(pid_t ancestor, int sig);

/* init-tree.c: signals every process of the sandbox that descends from a child of the init (or is
 * one) other than the live keepers in `keepers`: what a killed keeper left behind. How many, or -1. */
int signal_orphans(const pid_t *keepers, size_t keeper_count, int sig);

/* init-handover.c: the abstract socket a restarted agent hands a new channel through. */
int handover_listen(const char *name);
int handover_receive(int listener, int *conn);
void handover_done(int conn);

#endif
