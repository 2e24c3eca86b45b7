// The exec guard against the real kernel: a child under the notify filter with exec
// notification execs; the guard (driven here as the event loop would) reads, decides, answers.
#include "agentbox/sandbox/exec_guard.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <optional>

#include "agentbox/sandbox/seccomp.hpp"

namespace agentbox::sandbox {
namespace {

policy::ExecRule rule(std::string_view program, std::vector<std::string> args,
                      std::string_view action) {
  auto r = policy::parse_exec_rule(program, args, action);
  EXPECT_TRUE(r);
  return *r;
}

// Forks a child under the filter; `body` runs after the listener is handed over and its return
// value is the exit code (an exec that succeeds runs the program, whose code it is then).
struct Child {
  pid_t pid = -1;
  base::UniqueFd listener;
};

Child start(const std::function<int()>& body, uint64_t cookie = 0x1234) {
  auto prog = compile_seccomp({});
  EXPECT_TRUE(prog);
  SeccompProgram p = *prog;
  p.notify = with_exec_notify(std::move(p.notify), cookie);
  p.exec_required = true;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return {};
  }
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(20);
    close(sv[0]);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || load_seccomp(p, sv[1]) != 0) {
      _exit(100);
    }
    _exit(body());
  }
  close(sv[1]);
  base::UniqueFd sock(sv[0]);
  auto l = receive_fd(sock.get());
  EXPECT_TRUE(l);
  return {pid, l ? std::move(*l) : base::UniqueFd()};
}

// Serves notifications until the child exits (bounded, ~10 s); `tick` runs each round.
int serve(Child& c, ExecGuard& guard, audit::Sink& sink, const std::function<void()>& tick = {}) {
  auto mon = DenialMonitor::create(std::move(c.listener), sink);
  EXPECT_TRUE(mon);
  mon->set_exec_handler(&guard);
  for (int i = 0; i < 1000; ++i) {
    int status = 0;
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
    }
    pollfd p{.fd = mon->fd(), .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 10) > 0 && !mon->on_readable()) {
      // The listener is dead: every filtered task has exited, though the child may not be a
      // zombie yet; it cannot be held any more, so a blocking wait ends (alarm(20) bounds it).
      if (waitpid(c.pid, &status, 0) != c.pid) {
        return -2;
      }
      return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
    }
    if (tick) {
      tick();
    }
  }
  kill(c.pid, SIGKILL);
  waitpid(c.pid, nullptr, 0);
  return -1;
}

int exec_errno(const char* path, std::vector<const char*> argv) {
  argv.push_back(nullptr);
  execv(path, const_cast<char* const*>(argv.data()));  // NOLINT: execv's historical signature
  return errno;
}

TEST(ExecGuard, LogsEveryExecWithItsArgv) {
  audit::MemorySink sink;
  ExecGuard guard({.policy = {}, .log = true, .approver = nullptr}, sink);
  Child c = start([] { return exec_errno("/bin/true", {"true", "a\x1b[2J", "b c"}); });
  ASSERT_GT(c.pid, 0);
  EXPECT_EQ(serve(c, guard, sink), 0);
  std::string lines = sink.lines();
  EXPECT_NE(lines.find(R"("type":"exec")"), std::string::npos) << lines;
  EXPECT_NE(lines.find(R"("argv":["true","a\u001b[2J","b c"])"), std::string::npos) << lines;
  EXPECT_NE(lines.find(R"("path":"/usr/bin/true")"), std::string::npos) << lines;
  EXPECT_EQ(guard.stats().execs, 1u);
}

TEST(ExecGuard, TheCookieExecIsNotHeld) {
  // The launcher's own exec: not notified, so it needs no answer (nobody serves here).
  Child c = start(
      [] {
        const char* argv[] = {"true", nullptr};
        // Every argument a long: a variadic int leaves the register's upper half undefined.
        syscall(SYS_execve, "/bin/true", argv, environ, 0L, 0L, 0x1234L);
        return errno;
      },
      0x1234);
  ASSERT_GT(c.pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(c.pid, &status, 0), c.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(ExecGuard, DenyHoldsForEverySpellingOfTheProgram) {
  audit::MemorySink sink;
  ExecGuard guard({.policy = policy::ExecPolicy({rule("true", {"--force|-f"}, "deny")}, "/w"),
                   .log = true,
                   .approver = nullptr},
                  sink);
  char link[] = "/tmp/exec_guard_test_XXXXXX";
  ASSERT_NE(mkdtemp(link), nullptr);
  std::string dir = link;
  std::string sym = dir + "/t";
  ASSERT_EQ(symlink("/usr/bin/true", sym.c_str()), 0);
  Child c = start([&] {
    // Each denied spelling returns EACCES and the next is tried; one that got through would
    // run true and end the child with 0.
    int bad = 0;
    auto expect = [&](int err) { bad += err == EACCES ? 0 : 1; };
    expect(exec_errno("/bin/true", {"true", "--force"}));
    expect(exec_errno("/usr/bin/../bin/true", {"x", "-f"}));
    expect(exec_errno(sym.c_str(), {"t", "-qf"}));
    if (chdir("/usr") != 0) {
      return 102;
    }
    expect(exec_errno("bin/../bin/true", {"true", "--force"}));
    const char* argv[] = {"true", "--force", nullptr};
    int d = open("/usr/bin", O_PATH | O_DIRECTORY | O_CLOEXEC);
    syscall(SYS_execveat, d, "true", argv, environ, 0);
    expect(errno);
    int f = open("/usr/bin/true", O_PATH | O_CLOEXEC);
    syscall(SYS_execveat, f, "", argv, environ, AT_EMPTY_PATH);
    expect(errno);
    // A path the guard cannot read is a deny under rules (not EFAULT).
    syscall(SYS_execve, reinterpret_cast<const char*>(8), argv, environ);  // NOLINT
    expect(errno);
    return bad == 0 ? 77 : 100 + bad;
  });
  ASSERT_GT(c.pid, 0);
  EXPECT_EQ(serve(c, guard, sink), 77) << sink.lines();
  EXPECT_EQ(guard.stats().denied, 7u);
  std::string lines = sink.lines();
  EXPECT_NE(lines.find(R"("verdict":"deny")"), std::string::npos);
  EXPECT_NE(lines.find(R"("rule":"true --force|-f")"), std::string::npos) << lines;
  EXPECT_NE(lines.find(R"("reason":"argv unreadable)"), std::string::npos) << lines;
  unlink(sym.c_str());
  rmdir(dir.c_str());
}

// A test Approver: keeps the question and its callback for the test to answer.
class HeldApprover final : public policy::Approver {
 public:
  void ask(policy::Question q, policy::AnswerCallback answer) override {
    question = std::move(q);
    pending = std::move(answer);
  }
  std::optional<policy::Question> question;
  policy::AnswerCallback pending;
};

int ask_and_answer(policy::Approver* approver, const std::function<void(HeldApprover&)>& answer,
                   std::string* lines_out) {
  audit::MemorySink sink;
  ExecGuard guard({.policy = policy::ExecPolicy({rule("true", {"push", "--force*"}, "ask")}, "/w"),
                   .log = false,
                   .approver = approver},
                  sink);
  Child c = start([] { return exec_errno("/bin/true", {"true", "push", "--force"}); });
  int rounds = 0;
  int code = serve(c, guard, sink, [&] {
    auto* held = dynamic_cast<HeldApprover*>(approver);
    if (held != nullptr && held->pending && ++rounds == 30) {
      // ~300 ms asked and unanswered: the caller is still blocked in execve.
      int status = 0;
      EXPECT_EQ(waitpid(c.pid, &status, WNOHANG), 0);
      answer(*held);
      held->pending = nullptr;
    }
  });
  *lines_out = sink.lines();
  return code;
}

TEST(ExecGuard, AskHoldsTheExecUntilAllowed) {
  HeldApprover a;
  std::string lines;
  EXPECT_EQ(ask_and_answer(
                &a, [](HeldApprover& h) { h.pending(policy::Answer::allow_once); }, &lines),
            0);
  ASSERT_TRUE(a.question);
  EXPECT_EQ(a.question->kind, policy::ApprovalKind::exec);
  EXPECT_EQ(a.question->subject, "/usr/bin/true");
  EXPECT_EQ(a.question->detail, "true push --force");
  EXPECT_NE(lines.find(R"("verdict":"ask")"), std::string::npos) << lines;
  EXPECT_NE(lines.find(R"("answer":"once")"), std::string::npos) << lines;
}

TEST(ExecGuard, AskUnansweredIsDeniedWhenTheWaitEnds) {
  // The Approver's contract: at its bound it answers deny; the exec then fails with EACCES.
  HeldApprover a;
  std::string lines;
  EXPECT_EQ(ask_and_answer(
                &a, [](HeldApprover& h) { h.pending(policy::Answer::deny); }, &lines),
            EACCES);
  EXPECT_NE(lines.find(R"("answer":"deny")"), std::string::npos) << lines;
}

TEST(ExecGuard, AskWithoutAnApproverIsADeny) {
  std::string lines;
  EXPECT_EQ(ask_and_answer(
                nullptr, [](HeldApprover&) {}, &lines),
            EACCES);
  EXPECT_NE(lines.find("no approver"), std::string::npos) << lines;
}

}  // namespace
}  // namespace agentbox::sandbox
