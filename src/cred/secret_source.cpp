// Secret sources: env:, file:, cmd: read (see credentials.hpp for the rules; the grammar is
// policy/source.hpp's).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "agentbox/base/scope_exit.hpp"
#include "agentbox/base/sys.hpp"
#include "agentbox/cred/credentials.hpp"

extern char** environ;  // NOLINT: posix_spawn takes the process environment

namespace agentbox::cred {

namespace {

constexpr size_t kMaxSecretBytes = size_t{64} * 1024;
constexpr int kCmdTimeoutMs = 10'000;

std::string trim(std::string s) {
  const auto ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) {
    return {};
  }
  s.erase(s.find_last_not_of(ws) + 1);
  s.erase(0, b);
  return s;
}

// Waits for the child, killing it if it is still running. Returns the wait status.
int reap(pid_t pid, bool kill_first) {
  if (kill_first) {
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  (void)base::retry_eintr([&] { return ::waitpid(pid, &status, 0); });
  return status;
}

base::Result<std::string> run_command(const std::string& command) {
  AGENTBOX_ASSIGN_OR_RETURN(auto out, base::make_pipe());
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  base::ScopeExit fa_done([&] { posix_spawn_file_actions_destroy(&fa); });
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.write.get(), 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  if (int rc = ::posix_spawn(&pid, "/bin/sh", &fa, nullptr, argv, environ); rc != 0) {
    return base::Error::sys(rc, "posix_spawn", "/bin/sh");
  }
  out.write.reset();
  std::string data;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kCmdTimeoutMs);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{.fd = out.read.get(), .events = POLLIN, .revents = 0};
    const int pr = left.count() > 0 ? ::poll(&pfd, 1, static_cast<int>(left.count())) : 0;
    if (pr < 0 && errno == EINTR) {
      continue;
    }
    if (pr <= 0) {
      reap(pid, true);
      return base::Error::msg("command timed out after 10 s");
    }
    char buf[4096];
    const ssize_t n = base::retry_eintr([&] { return ::read(out.read.get(), buf, sizeof buf); });
    if (n < 0) {
      const int err = errno;
      reap(pid, true);
      return base::Error::sys(err, "read", "command output");
    }
    if (n == 0) {
      break;
    }
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxSecretBytes) {
      reap(pid, true);
      return base::Error::msg("command printed more than 64 KiB");
    }
  }
  const int status = reap(pid, false);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return base::Error::msg(WIFEXITED(status) ? "command exited with status " +
                                                    std::to_string(WEXITSTATUS(status))
                                              : "command was killed by a signal");
  }
  return data;
}

}  // namespace

base::Result<std::string> SecretSource::read(const policy::SourceSpec& from) const {
  // Only a spec built in code can be empty: policy::SourceSpec::parse refuses one.
  base::Result<std::string> value = base::Error::msg("empty source argument");
  if (!from.arg.empty()) {
    switch (from.kind) {
      case policy::SourceKind::kEnv: {
        auto v = env_ ? env_(from.arg) : std::nullopt;
        value = v ? base::Result<std::string>(std::move(*v))
                  : base::Result<std::string>(
                        base::Error::msg("variable `" + from.arg + "` is not set"));
        break;
      }
      case policy::SourceKind::kFile:
        value = base::read_file(from.arg, kMaxSecretBytes);
        break;
      case policy::SourceKind::kCmd:
        value = run_command(from.arg);
        break;
    }
  }
  if (!value) {
    // The source names a variable, path or command, never a secret: safe to show.
    return std::move(value).error().context("reading secret from `" + from.to_string() + "`");
  }
  std::string v =
      from.kind == policy::SourceKind::kEnv ? std::move(*value) : trim(std::move(*value));
  if (v.empty()) {
    return base::Error::msg("secret from `" + from.to_string() + "` is empty");
  }
  return v;
}

}  // namespace agentbox::cred
