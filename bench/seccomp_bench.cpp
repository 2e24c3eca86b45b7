// seccomp_bench: what a denied syscall costs with each denial mode, and what the filter costs an
// allowed call. Modes: no filter (the kernel's own error), SECCOMP_RET_ERRNO (answered in the
// kernel, unaudited), SECCOMP_RET_USER_NOTIF (answered by the supervisor, audited).
//
//   seccomp_bench [CALLS]                             the per-call table
//   seccomp_bench exec none|allow-all|agentbox CMD...  CMD under no filter, a one-instruction
//       allow-all filter, or agentbox's filter (its errno form), with no_new_privs in every case:
//       what a filter's entry path costs real work, without the box's other layers
//       (bench/confinement.sh's `git status` loop uses it, BENCHMARKS.md).
//   seccomp_bench calls FILE [N]                       CPU ns per newfstatat(FILE), getppid() and
//       open(FILE)+close, N times each (default 200000): run it bare, under `exec`, and inside
//       `agentbox run` to see what each layer adds per call (Landlock acts on open, not on stat).
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string_view>

#include "agentbox/audit/audit.hpp"
#include "agentbox/sandbox/seccomp.hpp"

namespace {

using agentbox::sandbox::DenialMonitor;
using agentbox::sandbox::SeccompProgram;

class NullSink final : public agentbox::audit::Sink {
 public:
  void emit(const agentbox::audit::Event&) noexcept override { ++n; }
  unsigned long n = 0;
};

enum class Mode { kNone, kErrno, kNotify };
// getppid: allowed whatever its arguments (the kernel's action cache skips the filter);
// ioctl(-1, TCGETS): allowed after the filter looked at its request (runs the filter; the kernel
// then fails it with EBADF at once); bpf(-1): denied.
enum class Call { kGetppid, kIoctl, kBpf };

// Child: optional filter, then `calls` of `call`; writes the elapsed ns per call to `out`.
void child(const SeccompProgram& prog, Mode mode, int sock, int out, int calls, Call call) {
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (mode != Mode::kNone &&
      agentbox::sandbox::load_seccomp(prog, mode == Mode::kNotify ? sock : -1) != 0) {
    _exit(1);
  }
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) {
    switch (call) {
      case Call::kGetppid:
        syscall(SYS_getppid);
        break;
      case Call::kIoctl:
        syscall(SYS_ioctl, -1, TCGETS, nullptr);
        break;
      case Call::kBpf:
        syscall(SYS_bpf, -1, nullptr, 0);
        break;
    }
  }
  double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
      calls;
  (void)!write(out, &ns, sizeof(ns));
  _exit(0);
}

double run(const SeccompProgram& prog, Mode mode, int calls, Call call) {
  int sv[2];
  int p[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || pipe2(p, O_CLOEXEC) != 0) {
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    child(prog, mode, sv[1], p[1], calls, call);
  }
  close(sv[1]);
  close(p[1]);
  NullSink sink;
  if (mode == Mode::kNotify) {
    auto fd = agentbox::sandbox::receive_fd(sv[0]);
    if (!fd) {
      return -1;
    }
    auto mon = DenialMonitor::create(std::move(fd).value(), sink);
    if (!mon) {
      return -1;
    }
    for (bool alive = true; alive;) {  // ends when the child's filter has no user left
      pollfd pf{.fd = mon->fd(), .events = POLLIN, .revents = 0};
      if (poll(&pf, 1, 5000) <= 0) {
        break;
      }
      alive = mon->on_readable();
    }
  }
  double ns = -1;
  (void)!read(p[0], &ns, sizeof(ns));
  waitpid(pid, nullptr, 0);
  close(p[0]);
  close(sv[0]);
  return ns;
}

// exec mode: nothing else of the box (no namespaces, Landlock or capability changes).
int exec_filtered(int argc, char** argv) {
  if (argc < 4) {
    std::fputs("seccomp_bench exec: usage: seccomp_bench exec none|allow-all|agentbox CMD...\n",
               stderr);
    return 2;
  }
  const std::string_view which = argv[2];
  SeccompProgram prog;
  if (which == "allow-all") {
    prog.errno_only = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  } else if (which == "agentbox") {
    auto compiled = agentbox::sandbox::compile_seccomp({});
    if (!compiled) {
      std::fputs(compiled.error().render().c_str(), stderr);
      return 1;
    }
    prog = std::move(*compiled);
  } else if (which != "none") {
    std::fprintf(stderr, "seccomp_bench exec: unknown filter '%s' (none, allow-all, agentbox)\n",
                 argv[2]);
    return 2;
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    std::perror("seccomp_bench exec: PR_SET_NO_NEW_PRIVS");
    return 1;
  }
  if (!prog.errno_only.empty()) {
    if (int err = agentbox::sandbox::load_seccomp(prog, -1); err != 0) {
      std::fprintf(stderr, "seccomp_bench exec: loading the filter: %s\n", std::strerror(err));
      return 1;
    }
  }
  execvp(argv[3], argv + 3);
  std::fprintf(stderr, "seccomp_bench exec: %s: %s\n", argv[3], std::strerror(errno));
  return 127;
}

double cpu_ns() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

// calls mode: the per-call cost of the syscalls `git status` is made of, in whatever confinement
// this process runs under.
int time_calls(int argc, char** argv) {
  if (argc < 3) {
    std::fputs("seccomp_bench calls: usage: seccomp_bench calls FILE [N]\n", stderr);
    return 2;
  }
  const char* file = argv[2];
  const long n = argc > 3 ? std::atol(argv[3]) : 200000;
  struct stat st {};
  if (n <= 0 || fstatat(AT_FDCWD, file, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    std::fprintf(stderr, "seccomp_bench calls: %s: %s\n", file,
                 n <= 0 ? "N must be positive" : std::strerror(errno));
    return 2;
  }
  double t0 = cpu_ns();
  for (long i = 0; i < n; ++i) {
    (void)fstatat(AT_FDCWD, file, &st, AT_SYMLINK_NOFOLLOW);
  }
  double t1 = cpu_ns();
  for (long i = 0; i < n; ++i) {
    (void)syscall(SYS_getppid);
  }
  double t2 = cpu_ns();
  const long opens = std::max(1L, n / 10);
  for (long i = 0; i < opens; ++i) {
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      close(fd);
    }
  }
  double t3 = cpu_ns();
  std::printf("newfstatat %.0f ns  getppid %.0f ns  open+close %.0f ns\n", (t1 - t0) / n,
              (t2 - t1) / n, (t3 - t2) / opens);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "exec") {
    return exec_filtered(argc, argv);
  }
  if (argc > 1 && std::string_view(argv[1]) == "calls") {
    return time_calls(argc, argv);
  }
  int calls = argc > 1 ? std::atoi(argv[1]) : 20000;
  auto prog = agentbox::sandbox::compile_seccomp({});
  auto linear =
      agentbox::sandbox::compile_seccomp_with({}, false, agentbox::sandbox::SeccompLayout::kLinear);
  if (!prog || !linear) {
    std::fputs((prog ? linear.error() : prog.error()).render().c_str(), stderr);
    return 1;
  }
  SeccompProgram linear_prog;
  linear_prog.errno_only = *linear;
  linear_prog.notify = *linear;
  std::printf("seccomp_bench: %d calls per row, ns per call (median of 7 interleaved rounds)\n",
              calls);
  struct Row {
    const char* name;
    Mode mode;
    Call call;
  };
  // A one-instruction allow-all filter: what any filter costs an allowed call (the seccomp entry
  // path), against which the agentbox filter's own evaluation shows.
  SeccompProgram allow_all;
  allow_all.errno_only = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  allow_all.notify = allow_all.errno_only;
  const Row rows[] = {{"allowed getppid, no filter", Mode::kNone, Call::kGetppid},
                      {"allowed getppid, allow-all filter", Mode::kErrno, Call::kGetppid},
                      {"allowed getppid, agentbox filter", Mode::kErrno, Call::kGetppid},
                      {"allowed ioctl TCGETS, no filter", Mode::kNone, Call::kIoctl},
                      {"allowed ioctl TCGETS, allow-all filter", Mode::kErrno, Call::kIoctl},
                      {"allowed ioctl TCGETS, agentbox filter linear", Mode::kErrno, Call::kIoctl},
                      {"allowed ioctl TCGETS, agentbox filter", Mode::kErrno, Call::kIoctl},
                      {"denied bpf, no filter (kernel EINVAL)", Mode::kNone, Call::kBpf},
                      {"denied bpf, RET_ERRNO", Mode::kErrno, Call::kBpf},
                      {"denied bpf, RET_USER_NOTIF + supervisor", Mode::kNotify, Call::kBpf}};
  // Rows interleaved round by round (a shared machine's load then weighs on all alike).
  constexpr int kRounds = 7;
  constexpr size_t kRows = sizeof(rows) / sizeof(rows[0]);
  double v[kRows][kRounds];
  for (int round = 0; round < kRounds; ++round) {
    for (size_t i = 0; i < kRows; ++i) {
      const Row& r = rows[i];
      const SeccompProgram& p = std::strstr(r.name, "allow-all") != nullptr ? allow_all
                                : std::strstr(r.name, "linear") != nullptr  ? linear_prog
                                                                            : *prog;
      v[i][round] = run(p, r.mode, calls, r.call);
    }
  }
  double base[3] = {0, 0, 0};
  for (size_t i = 0; i < kRows; ++i) {
    const Row& r = rows[i];
    std::sort(v[i], v[i] + kRounds);
    double med = v[i][kRounds / 2];
    auto& b = base[static_cast<int>(r.call)];
    if (r.mode == Mode::kNone) {
      b = med;
    }
    std::printf("  %-46s %10.0f ns   x%.2f\n", r.name, med, b > 0 ? med / b : 0.0);
  }
  return 0;
}
