// `agentbox run`: the process made safe to hold secrets, the request checked, then one
// app::Session prepared and run (session.hpp); its report goes back to the CLI.
#include "agentbox/app/run.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "agentbox/app/session.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/base/startup_trace.hpp"

extern char** environ;

namespace agentbox::app {

using base::Error;

std::string describe_exit(int code) {
  if (code > 128 && code < 128 + 65) {
    const char* name = sigabbrev_np(code - 128);
    return fmt::format("killed by signal {} (SIG{})", code - 128, name ? name : "?");
  }
  return fmt::format("exited with status {}", code);
}

std::vector<std::string> render(const SessionReport& r) {
  if (r.reason == EndReason::not_started) {
    return {};
  }
  std::vector<std::string> out = r.summary;
  out.insert(out.end(), r.review.begin(), r.review.end());
  out.insert(out.end(), r.telemetry.begin(), r.telemetry.end());
  std::string what = !r.started ? fmt::format("did not run (status {})", r.code)
                     : r.reason == EndReason::timeout ? "was stopped by --timeout (status 124)"
                     : r.reason == EndReason::audit_failed
                         ? "was stopped: its audit log could not be written "
                           "(status 125)"
                     : r.program_exited ? fmt::format("exited with status {}", r.code)
                                        : describe_exit(r.code);
  // The head, kept on the user's terminal, is what shows a log cut at its end or rewritten whole.
  out.push_back(
      fmt::format("audit chain head {} (`agentbox log --verify --head HEAD {}` checks "
                  "the log)",
                  r.chain_head, r.id));
  out.push_back(fmt::format("`{}` {} after {:.1f}s; session {}; audit log: {}/audit.jsonl",
                            r.command, what, r.seconds, r.id, r.dir));
  return out;
}

namespace {

// The supervisor holds the real secrets and the session CA key from prepare() on: no core file
// of it (RLIMIT_CORE 0, inherited by the `cmd:` credential helpers it starts, which print
// secrets) and no ptrace or /proc/PID/mem by other processes of your uid (not dumpable; this
// also makes /proc/PID of the supervisor root's, see launcher.cpp's write_own_maps). The hard
// limit is left alone: the box's programs get RLIMIT_CORE 0 from their own confinement.
void keep_out_of_dumps() {
  if (::prctl(PR_SET_DUMPABLE, 0) != 0) {
    base::log::warn("prctl PR_SET_DUMPABLE 0: {}", std::strerror(errno));
  }
  struct rlimit core {};
  if (::getrlimit(RLIMIT_CORE, &core) == 0) {
    core.rlim_cur = 0;
    ::setrlimit(RLIMIT_CORE, &core);
  }
}

// fds 0-2 must be open: otherwise the next socket or pipe would land there and reach the box as
// its stdin/stdout/stderr.
void open_std_fds() {
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int n = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);  // NOLINT: lands on fd, kept
      if (n != fd && n >= 0) {
        ::close(n);
      }
    }
  }
}

}  // namespace

SessionReport run(const RunRequest& req) {
  base::startup_trace::stamp("run");
  keep_out_of_dumps();
  auto t0 = std::chrono::steady_clock::now();
  open_std_fds();
  // First: a parent that ends while agentbox prepares is seen once the loop runs.
  base::UniqueFd parent = watch_parent(req.policy);
  auto env = sandbox::parse_environ(environ);
  if (req.command.empty()) {
    fmt::print(stderr, "{}",
               Error::msg("no command given: agentbox run [options] -- CMD ARGS...").render());
    return {};
  }
  auto session = Session::prepare(req, env, std::move(parent), t0);
  if (!session) {
    fmt::print(stderr, "{}", session.error().render());
    return {};
  }
  base::startup_trace::stamp("prepared");
  SessionReport report = (*session)->run();
  base::startup_trace::stamp("end");
  return report;
}

}  // namespace agentbox::app
