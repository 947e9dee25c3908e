/*
 * Compiles a sandbox's seccomp profile into the BPF program that its init loads (see
 * sandbox-init.c), once per agent start instead of once per `runc run`. libseccomp builds the
 * filter, as it does inside runc; this only reads the profile and writes the program.
 *
 * Input (stdin), one rule per line, fields split by spaces:
 *   default ERRNO                         what every call not matched below fails with
 *   allow NAME [INDEX OP VALUE VALUE2]... a call allowed (when all its conditions hold)
 *   errno NUMBER NAME [INDEX OP ...]...   a call that fails with NUMBER
 * OP is one of ne lt le eq ge gt masked_eq (for masked_eq, VALUE is the mask). Names this
 * libseccomp does not know are skipped, as runc skips them. Native x86_64 only: any other ABI
 * (int 0x80, x32) kills the caller.
 *
 * Output (stdout): the program (struct sock_filter[]). It starts with what runc prepends to its
 * filters: a call numbered above every call the profile names answers ENOSYS instead of the
 * default, so that programs fall back from syscalls newer than the profile (as glibc does).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ARGS 6
#define X32_SYSCALL_BIT 0x40000000

static int fail(int line, const char *what) {
  fprintf(stderr, "seccomp-bpf: line %d: %s\n", line, what);
  return 1;
}

static int parse_op(const char *name, enum scmp_compare *op) {
  static const struct {
    const char *name;
    enum scmp_compare op;
  } ops[] = {{"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT}, {"le", SCMP_CMP_LE}, {"eq", SCMP_CMP_EQ},
             {"ge", SCMP_CMP_GE}, {"gt", SCMP_CMP_GT}, {"masked_eq", SCMP_CMP_MASKED_EQ}};
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
    if (!strcmp(name, ops[i].name)) return *op = ops[i].op, 0;
  return -1;
}

static int parse_u64(const char *text, unsigned long long *value) {
  char *end;
  errno = 0;
  *value = strtoull(text, &end, 10);
  return errno || !*text || *end ? -1 : 0;
}

static int write_all(const void *data, size_t n) {
  for (const char *at = data; n > 0;) {
    ssize_t w = write(1, at, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    at += w, n -= (size_t)w;
  }
  return 0;
}

int main(void) {
  char line[4096];
  int number = 0, max_nr = -1;
  unsigned long long default_errno = 0;
  scmp_filter_ctx ctx = NULL;
  while (fgets(line, sizeof line, stdin)) {
    number++;
    char *fields[4 + 4 * MAX_ARGS], *save = NULL;
    int n = 0;
    for (char *f = strtok_r(line, " \n", &save); f; f = strtok_r(NULL, " \n", &save)) {
      if (n == (int)(sizeof fields / sizeof *fields)) return fail(number, "too many fields");
      fields[n++] = f;
    }
    if (n == 0) continue;
    if (!strcmp(fields[0], "default")) {
      if (ctx || n != 2 || parse_u64(fields[1], &default_errno) || default_errno > 4095) return fail(number, "expected one default, first: default ERRNO");
      ctx = seccomp_init(SCMP_ACT_ERRNO((unsigned)default_errno));
      if (!ctx) return fail(number, "seccomp_init failed");
      continue;
    }
    if (!ctx) return fail(number, "expected the default first");
    uint32_t action;
    int at;
    unsigned long long err;
    if (!strcmp(fields[0], "allow")) action = SCMP_ACT_ALLOW, at = 1;
    else if (!strcmp(fields[0], "errno") && n >= 3 && !parse_u64(fields[1], &err) && err <= 4095) action = SCMP_ACT_ERRNO((unsigned)err), at = 2;
    else return fail(number, "expected allow NAME ... or errno NUMBER NAME ...");
    if (at >= n) return fail(number, "expected a syscall name");
    int nr = seccomp_syscall_resolve_name(fields[at++]);
    if (nr == __NR_SCMP_ERROR) continue; /* unknown to this libseccomp */
    if ((n - at) % 4) return fail(number, "expected conditions as INDEX OP VALUE VALUE2");
    struct scmp_arg_cmp args[MAX_ARGS];
    unsigned count = 0;
    for (; at < n; at += 4, count++) {
      unsigned long long index, value, value2;
      enum scmp_compare op;
      if (count == MAX_ARGS || parse_u64(fields[at], &index) || index >= MAX_ARGS || parse_op(fields[at + 1], &op) ||
          parse_u64(fields[at + 2], &value) || parse_u64(fields[at + 3], &value2))
        return fail(number, "a malformed condition");
      args[count] = (struct scmp_arg_cmp){.arg = (unsigned)index, .op = op, .datum_a = value, .datum_b = value2};
    }
    int rc = seccomp_rule_add_array(ctx, action, nr, count, args);
    if (rc) {
      errno = -rc;
      perror("seccomp-bpf: seccomp_rule_add");
      return fail(number, "libseccomp refused the rule");
    }
    if (nr > max_nr) max_nr = nr;
  }
  if (!ctx || max_nr < 0) return fail(number, "expected a default and at least one rule");

  /* Calls above the profile's highest answer ENOSYS; x32 and foreign ABIs go on to libseccomp's
   * checks, which kill the caller. Jump offsets count from the next instruction. */
  struct sock_filter enosys[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, (unsigned)max_nr, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
  };
  if (write_all(enosys, sizeof enosys)) return fail(number, "writing the program failed");
  int rc = seccomp_export_bpf(ctx, 1);
  seccomp_release(ctx);
  if (rc) return fail(number, "seccomp_export_bpf failed");
  return 0;
}
