// The floor of holding every execve through seccomp user notification (issue 16's exec guard):
// the least any supervisor can add to one exec when the kernel stops the caller, wakes another
// process, and waits for its answer. No agentbox code: a child installs a filter whose only
// non-allow action is SECCOMP_RET_USER_NOTIF on execve/execveat and hands the listener to its
// parent, which answers each notification with SECCOMP_USER_NOTIF_FLAG_CONTINUE at once (no argv
// read, no audit line). The child then times N fork+execve(/bin/true)+wait in a loop, the same
// loop bench/exec_cost.sh times in a shell. Variants, interleaved round by round:
//   bare    the loop with no filter
//   notify  the loop with the filter and a parent that continues every exec at once
// Prints the median microseconds per exec of each and the difference.
//
//   cc -O2 -o /tmp/exec_notify_floor bench/exec_notify_floor.c && /tmp/exec_notify_floor [ROUNDS]
//   [N]
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char* what) {
  perror(what);
  exit(2);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

// N fork+exec+wait of /bin/true; returns microseconds per iteration.
static double exec_loop(int n) {
  char* const argv[] = {"true", NULL};
  char* const envp[] = {NULL};
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
  return (now_us() - start) / n;
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

// One round with the filter: the child measures, the parent answers; returns us per exec.
static double notify_round(int n) {
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
    double us = exec_loop(n);
    if (write(sv[1], &us, sizeof us) != sizeof us)
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
  struct seccomp_notif_sizes sz;
  if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) != 0)
    die("notif sizes");
  struct seccomp_notif* req = calloc(1, sz.seccomp_notif);
  struct seccomp_notif_resp* resp = calloc(1, sz.seccomp_notif_resp);
  for (;;) {
    memset(req, 0, sz.seccomp_notif);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) != 0) {
      if (errno == EINTR)
        continue;
      break;  // ENOENT: the filter's last user is gone (the child exited)
    }
    memset(resp, 0, sz.seccomp_notif_resp);
    resp->id = req->id;
    resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp) != 0 && errno != ENOENT)
      die("notif send");
  }
  double us = 0;
  if (read(sv[0], &us, sizeof us) != sizeof us)
    die("read result");
  int st;
  waitpid(child, &st, 0);
  close(listener);
  close(sv[0]);
  free(req);
  free(resp);
  return us;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  int n = argc > 2 ? atoi(argv[2]) : 2000;
  if (rounds < 1 || rounds > 100 || n < 1 || n > 1000000) {
    fprintf(stderr, "usage: exec_notify_floor [ROUNDS 1-100] [N]\n");
    return 2;
  }
  double bare[100], notify[100];
  for (int r = 0; r < rounds; ++r) {
    if (r % 2 == 0) {
      bare[r] = exec_loop(n);
      notify[r] = notify_round(n);
    } else {
      notify[r] = notify_round(n);
      bare[r] = exec_loop(n);
    }
  }
  qsort(bare, rounds, sizeof bare[0], cmp);
  qsort(notify, rounds, sizeof notify[0], cmp);
  double lb = bare[rounds / 2], ln = notify[rounds / 2];
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  printf("load: %.2f %.2f %.2f; %d rounds of %d execs each\n", load[0], load[1], load[2], rounds,
         n);
  printf("bare    %8.1f us per fork+exec+wait of /bin/true (median)\n", lb);
  printf("notify  %8.1f us (every execve held by seccomp user notification, continued at once)\n",
         ln);
  printf("floor of a held exec: %+.1f us\n", ln - lb);
  return 0;
}
