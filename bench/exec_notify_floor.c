// The floor of holding every execve through seccomp user notification (issue 16's exec guard):
// the least any supervisor can add to one exec when the kernel stops the caller, wakes another
// process, and waits for its answer. No agentbox code: a child installs a filter whose only
// non-allow action is SECCOMP_RET_USER_NOTIF on execve/execveat and hands the listener to its
// parent, which answers each notification with SECCOMP_USER_NOTIF_FLAG_CONTINUE at once (no argv
// read, no audit line). The child then times N fork+execve(/bin/true)+wait in a loop, the same
// loop bench/exec_cost.sh times in a shell. Variants, alternated round by round (order swapped
// every round, so a load that drifts hits both alike):
//   bare    the loop with no filter
//   notify  the loop with the filter and a parent that continues every exec at once
//   read    as notify, and the parent reads the path and argv with one process_vm_readv each
//           and checks the id is still valid before continuing (what any guard must do)
// Per round and variant: wall us per exec (in the looping process), CPU us per exec of the loop
// (the looping process and its reaped children: fork, exec, exit) and of the answering parent
// (0 for bare). The differences are taken per round (paired: variant - bare of the same round)
// and given as median and quartiles over the rounds; a single run's median means little on a
// 2-core machine shared with others (rounds move by +-20%).
//
//   cc -O2 -o /tmp/exec_notify_floor bench/exec_notify_floor.c &&
//   /tmp/exec_notify_floor [ROUNDS] [N]        (defaults 21 rounds of 1000)
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kBare, kNotify, kRead, kVariants };
static const char* const kNames[kVariants] = {"bare", "notify", "read"};

// One round of one variant, per exec: wall, CPU of the loop (and its children), CPU of the
// answering parent.
struct Sample {
  double wall, loop_cpu, parent_cpu, parent_switches;
};

static void die(const char* what) {
  perror(what);
  exit(2);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static double cpu_us(int who) {
  struct rusage u;
  getrusage(who, &u);
  return u.ru_utime.tv_sec * 1e6 + u.ru_utime.tv_usec + u.ru_stime.tv_sec * 1e6 +
         u.ru_stime.tv_usec;
}

// N fork+exec+wait of /bin/true; wall and CPU (this process and the children it reaped) per
// iteration.
static struct Sample exec_loop(int n) {
  char* const argv[] = {"true", NULL};
  char* const envp[] = {NULL};
  double cpu0 = cpu_us(RUSAGE_SELF) + cpu_us(RUSAGE_CHILDREN);
  double start = now_us();
  for (int i = 0; i < n; ++i) {
    pid_t p = fork();
    if (p < 0)
      die("fork");
    if (p == 0) {
      execve("/bin/true", argv, envp);
      _exit(127);
    }
    int st;
    if (waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
      die("child");
  }
  struct Sample s = {.wall = (now_us() - start) / n, .parent_cpu = 0, .parent_switches = 0};
  s.loop_cpu = (cpu_us(RUSAGE_SELF) + cpu_us(RUSAGE_CHILDREN) - cpu0) / n;
  return s;
}

static int install_notify_filter(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
  };
  struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    die("no_new_privs");
  int fd =
      (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  if (fd < 0)
    die("seccomp");
  return fd;
}

// The least a guard reads: the path (up to its page's end) and argv's first 32 pointers with one
// process_vm_readv, then each argument (up to its page's end) with one more; the id checked.
static void read_call(int listener, const struct seccomp_notif* req) {
  char path[4096], strs[4096];
  uint64_t ptrs[32];
  uint64_t pa = req->data.args[0], aa = req->data.args[1];
  struct iovec local[2] = {{path, 4096 - pa % 4096}, {ptrs, sizeof ptrs}};
  struct iovec remote[2] = {{(void*)pa, 4096 - pa % 4096}, {(void*)aa, sizeof ptrs}};
  if (process_vm_readv(req->pid, local, 1, remote, 1, 0) < 0 ||
      process_vm_readv(req->pid, local + 1, 1, remote + 1, 1, 0) < 0)
    return;
  struct iovec sl[32], sr[32];
  int k = 0;
  size_t used = 0;
  for (; k < 32 && ptrs[k] != 0; ++k) {
    size_t len = 4096 - ptrs[k] % 4096;
    if (used + len > sizeof strs)
      break;
    sl[k] = (struct iovec){strs + used, len};
    sr[k] = (struct iovec){(void*)ptrs[k], len};
    used += len;
  }
  if (k > 0 && process_vm_readv(req->pid, sl, (unsigned long)k, sr, (unsigned long)k, 0) < 0)
    return;
  if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) != 0)
    return;
}

// Answers every notification until the filter's last user is gone; returns the CPU it used and
// counts its context switches (a sleep in RECV and a wake-up per exec at least) in *switches.
static double answer_all(int listener, int with_read, double* switches) {
  struct seccomp_notif_sizes sz;
  if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) != 0)
    die("notif sizes");
  struct seccomp_notif* req = calloc(1, sz.seccomp_notif);
  struct seccomp_notif_resp* resp = calloc(1, sz.seccomp_notif_resp);
  struct rusage u0, u1;
  getrusage(RUSAGE_SELF, &u0);
  double cpu0 = cpu_us(RUSAGE_SELF);
  for (;;) {
    memset(req, 0, sz.seccomp_notif);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) != 0) {
      if (errno == EINTR)
        continue;
      break;  // ENOENT: the filter's last user is gone (the child exited)
    }
    if (with_read)
      read_call(listener, req);
    memset(resp, 0, sz.seccomp_notif_resp);
    resp->id = req->id;
    resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp) != 0 && errno != ENOENT)
      die("notif send");
  }
  free(req);
  free(resp);
  getrusage(RUSAGE_SELF, &u1);
  *switches = (double)(u1.ru_nvcsw + u1.ru_nivcsw - u0.ru_nvcsw - u0.ru_nivcsw);
  return cpu_us(RUSAGE_SELF) - cpu0;
}

// One round with the filter: the child measures, the parent answers.
static struct Sample notify_round(int n, int with_read) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    die("socketpair");
  pid_t child = fork();
  if (child < 0)
    die("fork");
  if (child == 0) {
    close(sv[0]);
    int listener = install_notify_filter();
    // The parent takes its own copy with pidfd_getfd(2), told the number through the socket.
    if (write(sv[1], &listener, sizeof listener) != sizeof listener)
      _exit(3);
    char go;
    if (read(sv[1], &go, 1) != 1)
      _exit(3);
    close(listener);  // the parent's copy is the only one: its RECV ends with the loop
    struct Sample s = exec_loop(n);
    if (write(sv[1], &s, sizeof s) != sizeof s)
      _exit(3);
    _exit(0);
  }
  close(sv[1]);
  int child_fd;
  if (read(sv[0], &child_fd, sizeof child_fd) != sizeof child_fd)
    die("read listener");
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  int listener = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, child_fd, 0);
  if (listener < 0)
    die("pidfd_getfd");
  close(pidfd);
  if (write(sv[0], "g", 1) != 1)
    die("go");
  double switches = 0;
  double parent_cpu = answer_all(listener, with_read, &switches);
  struct Sample s;
  if (read(sv[0], &s, sizeof s) != sizeof s)
    die("read result");
  s.parent_cpu = parent_cpu / n;
  s.parent_switches = switches / n;
  int st;
  waitpid(child, &st, 0);
  close(listener);
  close(sv[0]);
  return s;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

// Median and quartiles of v[0..n) (sorts v).
static void quartiles(double* v, int n, double q[3]) {
  qsort(v, (size_t)n, sizeof v[0], cmp);
  for (int i = 0; i < 3; ++i) {
    double pos = (n - 1) * (i + 1) / 4.0;
    int lo = (int)pos;
    double f = pos - lo;
    q[i] = lo + 1 < n ? v[lo] * (1 - f) + v[lo + 1] * f : v[lo];
  }
}

// A difference is printed with its sign.
static void report(const char* what, double* v, int n, int difference) {
  double q[3];
  quartiles(v, n, q);
  printf(difference ? "  %-30s %+8.1f  [%+.1f .. %+.1f]\n" : "  %-30s %8.1f  [%.1f .. %.1f]\n",
         what, q[1], q[0], q[2]);
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 21;
  int n = argc > 2 ? atoi(argv[2]) : 1000;
  if (rounds < 1 || rounds > 200 || n < 1 || n > 1000000) {
    fprintf(stderr, "usage: exec_notify_floor [ROUNDS 1-200] [N]\n");
    return 2;
  }
  static struct Sample s[200][kVariants];
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < kVariants; ++k) {
      int v = r % 2 == 0 ? k : kVariants - 1 - k;  // order swapped every round
      s[r][v] = v == kBare ? exec_loop(n) : notify_round(n, v == kRead);
    }
  }
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  printf("load: %.2f %.2f %.2f; %d rounds of %d execs each\n", load[0], load[1], load[2], rounds,
         n);
  printf("us per fork+exec+wait of /bin/true: median [quartiles] over the rounds\n");
  static double v[200];
  for (int k = 0; k < kVariants; ++k) {
    printf("%s\n", kNames[k]);
    for (int r = 0; r < rounds; ++r)
      v[r] = s[r][k].wall;
    report("wall", v, rounds, 0);
    for (int r = 0; r < rounds; ++r)
      v[r] = s[r][k].loop_cpu + s[r][k].parent_cpu;
    report("cpu (loop + answering parent)", v, rounds, 0);
    if (k == kBare)
      continue;
    for (int r = 0; r < rounds; ++r)
      v[r] = s[r][k].wall - s[r][kBare].wall;
    report("wall - bare (paired)", v, rounds, 1);
    for (int r = 0; r < rounds; ++r)
      v[r] = s[r][k].loop_cpu - s[r][kBare].loop_cpu;
    report("loop cpu - bare (paired)", v, rounds, 1);
    for (int r = 0; r < rounds; ++r)
      v[r] = s[r][k].parent_cpu;
    report("answering parent cpu", v, rounds, 0);
    for (int r = 0; r < rounds; ++r)
      v[r] = s[r][k].parent_switches;
    report("answering parent switches", v, rounds, 0);
  }
  return 0;
}
