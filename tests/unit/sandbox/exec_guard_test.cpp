// The exec guard against the real kernel: a child under the notify filter with exec
// notification execs; the guard (driven here as the event loop would) reads, decides, answers.
#include "agentbox/sandbox/exec_guard.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
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

// read_exec_call on a forked copy of this process (the same addresses, paused): the argv built
// here is read out of the child. Pages are laid out so that a string crosses a page, one ends
// at the last byte before a page it may not touch, and the pointer array straddles a page with
// a pointer split across the boundary.
struct Paused {
  pid_t pid = -1;
  ~Paused() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

base::Result<policy::ExecCall> read_in_child(const char* path, char** argv) {
  Paused child;
  child.pid = fork();
  if (child.pid == 0) {
    alarm(20);
    pause();
    _exit(0);
  }
  seccomp_data data{};
  data.nr = __NR_execve;
  data.args[0] = reinterpret_cast<uint64_t>(path);  // NOLINT: the child's address, the same
  data.args[1] = reinterpret_cast<uint64_t>(argv);  // NOLINT
  return read_exec_call(child.pid, data);
}

TEST(ExecGuard, ReadsArgvAcrossPagesAndBatchesExactly) {
  const size_t page = 4096;
  auto* strs = static_cast<char*>(
      mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  auto* ptrs = static_cast<char*>(
      mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(strs, MAP_FAILED);
  ASSERT_NE(ptrs, MAP_FAILED);
  ASSERT_EQ(mprotect(strs + 2 * page, page, PROT_NONE), 0);
  std::vector<std::string> want;
  for (size_t i = 0; i < 300; ++i) {  // several batches; lengths around the first read's size
    const size_t len = std::vector<size_t>{0, 1, 255, 256, 257, 1000, 7}[i % 7];
    want.push_back(std::string(len, static_cast<char>('a' + i % 26)));
  }
  char* crossing = strs + page - 10;  // 20 bytes over the first page's end
  std::memset(crossing, 'x', 20);
  crossing[20] = '\0';
  want[3] = std::string(20, 'x');
  char* at_end = strs + 3 * page - page - 4;  // "end" and its NUL: the last bytes before PROT_NONE
  std::memcpy(at_end, "end", 4);
  want[70] = "end";
  // The pointer array: unaligned, its 6th pointer split by the page boundary.
  auto** argv = reinterpret_cast<char**>(ptrs + page - 5 * sizeof(char*) - 4);  // NOLINT
  std::vector<std::string> owned = want;
  for (size_t i = 0; i < want.size(); ++i) {
    char* p = i == 3 ? crossing : i == 70 ? at_end : owned[i].data();
    std::memcpy(reinterpret_cast<char*>(argv) + i * sizeof p, &p, sizeof p);  // NOLINT
  }
  char* null = nullptr;
  std::memcpy(reinterpret_cast<char*>(argv) + want.size() * sizeof null, &null, sizeof null);
  auto call = read_in_child(crossing, argv);
  ASSERT_TRUE(call) << call.error().message();
  EXPECT_EQ(call->given, std::string(20, 'x'));
  EXPECT_FALSE(call->truncated);
  ASSERT_EQ(call->argv.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(call->argv[i], want[i]) << "argument " << i;
  }
  munmap(strs, 3 * page);
  munmap(ptrs, 2 * page);
}

TEST(ExecGuard, ReadingStopsAtTheBoundsAndSaysSo) {
  // More pointers than kMaxArgs: the first kMaxArgs, truncated.
  std::vector<std::string> many(ExecGuard::kMaxArgs + 3, "a");
  std::vector<char*> argv;
  for (auto& a : many) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  auto call = read_in_child("/bin/true", argv.data());
  ASSERT_TRUE(call) << call.error().message();
  EXPECT_TRUE(call->truncated);
  EXPECT_EQ(call->argv.size(), ExecGuard::kMaxArgs);
  // Strings over kMaxBytes in all: cut at the bound, truncated.
  std::string big(ExecGuard::kMaxBytes - 10, 'b');
  std::string next(100, 'c');
  char* two[] = {big.data(), next.data(), next.data(), nullptr};
  call = read_in_child("/bin/true", two);
  ASSERT_TRUE(call) << call.error().message();
  EXPECT_TRUE(call->truncated);
  ASSERT_EQ(call->argv.size(), 2u);
  EXPECT_EQ(call->argv[0], big);
  EXPECT_EQ(call->argv[1], std::string(9, 'c'));
  // Exactly the bound of pointers, NULL after: nothing is missing, so nothing is truncated (a
  // truncated exec of a program a deny rule names is denied).
  std::vector<char*> exact(argv.begin(), argv.begin() + ExecGuard::kMaxArgs);
  exact.push_back(nullptr);
  call = read_in_child("/bin/true", exact.data());
  ASSERT_TRUE(call) << call.error().message();
  EXPECT_EQ(call->argv.size(), ExecGuard::kMaxArgs);
  EXPECT_FALSE(call->truncated);
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
