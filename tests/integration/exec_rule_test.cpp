// Exec rules and exec logging end to end (issue 16, item 4): a `[[exec.rule]]` denies `git push
// --force` and `-f` to a local bare repository under every spelling of git while a plain push
// works (oracle: the bare repository's ref, read on the host); `exec` audit events carry argv;
// with no rules and logging off the box's seccomp filters have no exec notification (oracle:
// the filters read from the host with PTRACE_SECCOMP_GET_FILTER). As root and as the user.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace agentbox::it {
namespace {

constexpr const char* kForceRule = R"([[exec.rule]]
program = "git"
args = ["push", "--force*|-f"]
action = "deny"
)";

class ExecRuleTest : public BoxWorldTest {
 protected:
  // A user config with `toml` (XDG_CONFIG_HOME inside the world, never the real home).
  RunOptions with_config(const std::string& toml) {
    RunOptions o = with_user_config(w_, toml);
    o.timeout_ms = 120000;  // several git commands in a box on a shared, loaded machine
    return o;
  }
  // The bare repository's main, read on the host ("" when missing).
  std::string remote_main() const {
    std::string ref = slurp(w_.ws + "/remote.git/refs/heads/main");
    while (!ref.empty() && (ref.back() == '\n')) {
      ref.pop_back();
    }
    return ref;
  }
  std::string head_of(const std::string& name) const {
    std::string s = slurp(fmt::format("{}/{}", w_.ws, name));
    while (!s.empty() && s.back() == '\n') {
      s.pop_back();
    }
    return s;
  }
};

// Inside the box, in the workspace: a repository, a bare remote, a plain push, a second commit
// pushed plainly (fast-forward), then an amended commit pushed with force under every spelling.
std::string force_push_script(const std::string& marks) {
  return fmt::format(
      "set -u; G='git -c user.name=b -c user.email=b@example.com';"
      "git init -q --bare remote.git && git -C remote.git symbolic-ref HEAD refs/heads/main &&"
      " git init -q -b main repo && cd repo && $G commit -q --allow-empty -m one &&"
      " git push -q ../remote.git main || exit 10;"
      "$G commit -q --allow-empty -m two && git push -q ../remote.git main || exit 11;"
      "git rev-parse HEAD > {0}/pushed;"
      "$G commit -q --amend --allow-empty -m two-rewritten && git rev-parse HEAD > {0}/amended;"
      "ln -s /usr/bin/git ./g;"
      "n=0; try() {{ \"$@\" >/dev/null 2>&1 && echo \"got through: $*\" && n=$((n+1)); }};"
      "try git push ../remote.git +main:main --force;"
      "try git push -f ../remote.git main;"
      "try /usr/bin/git push --force ../remote.git main;"
      "try /usr/bin/../bin/git push -f ../remote.git main;"
      "try ./g push --force-with-lease ../remote.git main;"
      "try env git push -qf ../remote.git main;"
      "try sh -c 'cd /usr && exec bin/git -C \"$0\" push --force ../remote.git main' \"$PWD\";"
      "echo \"through=$n\"",
      marks);
}

TEST_P(ExecRuleTest, ForcePushIsDeniedUnderEverySpellingWhilePlainPushWorks) {
  if (sh("git --version >/dev/null 2>&1") != 0) {
    skip("git is not installed");
    return;
  }
  RunOptions o = with_config(kForceRule);
  Output r = run(w_, {"run", "-q", "--", "/bin/sh", "-c", force_push_script(w_.ws)}, o);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("through=0")) << r.out;
  // The oracle, on the host: the remote still holds the plainly pushed commit.
  std::string pushed = head_of("pushed");
  ASSERT_EQ(pushed.size(), 40u);
  EXPECT_NE(head_of("amended"), pushed);
  EXPECT_EQ(remote_main(), pushed);
  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find(R"("verdict":"deny")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("rule":"git push --force*|-f")"), std::string::npos) << log;
}

TEST_P(ExecRuleTest, ADeniedLaunchCommandDoesNotStart) {
  RunOptions o = with_config(kForceRule);
  Output r = run(w_, {"run", "-q", "--", "git", "push", "--force", "/nonexistent"}, o);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("exec rule"), std::string::npos) << r.err;
}

TEST_P(ExecRuleTest, ExecEventsCarryArgv) {
  RunOptions o = with_config("[exec]\nlog = true\n");
  Output r = run(w_,
                 {"run", "-q", "--", "/bin/sh", "-c",
                  "/bin/echo 'hello world' \"$(printf 'a\\033b')\" >/dev/null; true"},
                 o);
  ASSERT_EQ(r.status, 0) << r.err;
  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find(R"("argv":["/bin/echo","hello world","a\u001bb"])"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("path":"/usr/bin/echo")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("type":"exec.summary")"), std::string::npos) << log;
}

// The box's seccomp filters, read from the host (root only: PTRACE_SECCOMP_GET_FILTER needs
// CAP_SYS_ADMIN); true when one holds execve for the exec guard (with_exec_notify's prologue).
bool has_exec_notification(pid_t pid, std::string& why) {
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0 ||
      ::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) {
    why = fmt::format("ptrace {}: {}", pid, std::strerror(errno));
    return false;
  }
  int status = 0;
  ::waitpid(pid, &status, __WALL);
  bool found = false;
  for (long i = 0; i < 16; ++i) {
    std::vector<sock_filter> prog(4096);
    long n = ::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, reinterpret_cast<void*>(i), prog.data());
    if (n <= 0) {
      break;
    }
    for (long k = 0; k + 1 < n; ++k) {
      const sock_filter& a = prog[static_cast<size_t>(k)];
      const sock_filter& b = prog[static_cast<size_t>(k + 1)];
      found = found || (a.code == (BPF_JMP | BPF_JEQ | BPF_K) && a.k == __NR_execveat &&
                        b.code == (BPF_JMP | BPF_JEQ | BPF_K) && b.k == __NR_execve);
    }
  }
  ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  return found;
}

// Runs `sleep` in a box with `toml`, reads its filters from the host, ends the box.
std::optional<bool> box_holds_exec(const World& w, const RunOptions& o, std::string& why) {
  const std::string tag = fmt::format("7{}.5", ::getpid() % 1000);
  int out = -1;
  int err = -1;
  pid_t running = spawn(w, {"run", "-q", "--", "/bin/sleep", tag}, o, &out, &err);
  std::vector<pid_t> pids;
  for (int i = 0; i < 300 && pids.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (pid_t p : pids_with_cmdline(tag)) {
      if (slurp(fmt::format("/proc/{}/comm", p)) == "sleep\n") {  // not agentbox's own argv
        pids.push_back(p);
      }
    }
  }
  std::optional<bool> held;
  if (!pids.empty()) {
    held = has_exec_notification(pids[0], why);
  } else {
    why = "the box's sleep never appeared";
  }
  ::kill(running, SIGKILL);
  wait_for(running, 10000);
  ::close(out);
  ::close(err);
  return why.empty() ? held : std::nullopt;
}

TEST_P(ExecRuleTest, WithoutRulesOrLoggingNoFilterHoldsExec) {
  if (::geteuid() != 0) {
    skip("reading another process's seccomp filters needs root");
    return;
  }
  std::string why;
  std::optional<bool> off = box_holds_exec(w_, with_config("[exec]\nlog = false\n"), why);
  ASSERT_TRUE(off.has_value()) << why;
  EXPECT_FALSE(*off);
  // The same oracle sees the prologue when it is there.
  std::optional<bool> on = box_holds_exec(w_, with_config(kForceRule), why);
  ASSERT_TRUE(on.has_value()) << why;
  EXPECT_TRUE(*on);
}

INSTANTIATE_TEST_SUITE_P(As, ExecRuleTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
