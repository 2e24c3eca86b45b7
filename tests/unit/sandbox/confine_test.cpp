// Confinement end to end: prepare() in the parent, apply() in a forked child, then check every
// layer from inside (status flags, a denied write, a denied syscall) and the protected-path check.
#include "agentbox/sandbox/confine.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "agentbox/base/sys.hpp"
#include "child.hpp"

namespace agentbox::sandbox {
namespace {

using testing::become_root_in_userns;
using testing::describe;
using testing::errno_of;
using testing::run_in_child;

class ConfineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-confine-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    work_ = tmpl;
    ASSERT_EQ(mkdir((work_ + "/.git").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((work_ + "/.git/hooks").c_str(), 0755), 0);
    char out[] = "/tmp/agentbox-outside-XXXXXX";
    ASSERT_NE(mkdtemp(out), nullptr);
    outside_ = out;
  }
  void TearDown() override {
    std::filesystem::remove_all(work_);
    std::filesystem::remove_all(outside_);
  }
  ConfinementSpec spec() const {
    ConfinementSpec s;
    add_system_grants(s);
    s.rw_paths.push_back(work_);
    s.ro_within_rw.push_back(work_ + "/.git/hooks");
    s.limits.file_size = 1 << 20;
    return s;
  }
  // Makes the protected path read-only the way the mount layer does (bind + remount ro), in a
  // private mount namespace of the child.
  bool protect(const std::string& path) const {
    return unshare(CLONE_NEWNS) == 0 &&
           mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
           mount(path.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) == 0 &&
           mount(nullptr, path.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }

  std::string work_, outside_;
};

TEST_F(ConfineTest, EveryLayerIsInPlace) {
  auto prepared = prepare(spec());
  ASSERT_TRUE(prepared) << prepared.error().render();
  auto r = run_in_child([&] {
    if (!become_root_in_userns() || !protect(work_ + "/.git/hooks")) {
      return 100;
    }
    if (ChildFailure f = apply(*prepared); f) {
      fprintf(stderr, "%s\n", to_error(f).render().c_str());
      return 101;
    }
    auto status = base::read_file("/proc/self/status");
    if (!status || status->find("NoNewPrivs:\t1") == std::string::npos ||
        status->find("Seccomp:\t2") == std::string::npos ||
        status->find("CapEff:\t0000000000000000") == std::string::npos ||
        status->find("CapBnd:\t0000000000000000") == std::string::npos) {
      return 102;
    }
    int fd = open((work_ + "/ok").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
      return 103;  // the workspace is writable
    }
    close(fd);
    if (errno_of(open((work_ + "/.git/hooks/post-checkout").c_str(), O_CREAT | O_WRONLY, 0755)) !=
        EROFS) {
      return 104;  // the protected path is not
    }
    if (landlock_abi() > 0 &&
        errno_of(open((outside_ + "/x").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) != EACCES) {
      return 105;  // Landlock: nothing outside the grants
    }
    if (landlock_abi() > 0 &&
        errno_of(open("/proc/sys/kernel/printk_ratelimit", O_WRONLY | O_CLOEXEC)) != EACCES) {
      return 107;  // /proc is read-only: euid 0 without caps would pass the sysctl owner check
    }
    if (errno_of(syscall(SYS_mount, nullptr, "/", nullptr, MS_REMOUNT, nullptr)) != EPERM) {
      return 106;  // seccomp
    }
    return 0;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
  struct stat st {};
  EXPECT_NE(stat((outside_ + "/x").c_str(), &st), 0) << "ground truth: nothing written outside";
}

TEST_F(ConfineTest, WritableProtectedPathRefusesToStart) {
  auto prepared = prepare(spec());
  ASSERT_TRUE(prepared) << prepared.error().render();
  auto r = run_in_child([&] {
    if (!become_root_in_userns()) {
      return 100;
    }
    ChildFailure f = apply(*prepared);  // .git/hooks is NOT read-only here
    return f.stage == Stage::kProtect && f.err == EROFS ? 0 : 1;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

TEST_F(ConfineTest, NotifiedDenialReachesSupervisor) {
  auto prepared = prepare(spec());
  ASSERT_TRUE(prepared);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  base::UniqueFd mine(sv[0]);
  base::UniqueFd theirs(sv[1]);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    if (!become_root_in_userns() || !protect(work_ + "/.git/hooks") ||
        apply(*prepared, theirs.get())) {
      _exit(100);
    }
    _exit(errno_of(syscall(SYS_bpf, 0, nullptr, 0)));
  }
  theirs.reset();
  auto listener = receive_fd(mine.get());
  ASSERT_TRUE(listener) << listener.error().render();
  audit::MemorySink sink;
  auto monitor = DenialMonitor::create(std::move(listener).value(), sink);
  ASSERT_TRUE(monitor);
  for (int i = 0; i < 500 && monitor->denied() == 0; ++i) {
    pollfd p{.fd = monitor->fd(), .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 10) > 0) {
      monitor->on_readable();
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == EPERM) << status;
  EXPECT_NE(sink.lines().find(R"("syscall":"bpf")"), std::string::npos) << sink.lines();
}

TEST(Confine, ErrorsNameTheStage) {
  base::Error e = to_error({Stage::kCaps, EPERM});
  EXPECT_NE(e.render().find("dropping capabilities"), std::string::npos) << e.render();
  EXPECT_NE(e.render().find("EPERM"), std::string::npos) << e.render();
  EXPECT_FALSE(e.hint().empty());
}

TEST(Confine, RejectsRelativeProtectedPath) {
  ConfinementSpec s;
  s.ro_within_rw = {"relative/.git/hooks"};
  EXPECT_FALSE(prepare(s));
  s.ro_within_rw.clear();
  s.seccomp_allow_groups = {"no-such-group"};
  EXPECT_FALSE(prepare(s));
}

}  // namespace
}  // namespace agentbox::sandbox

namespace agentbox::sandbox {
namespace {

TEST(Confine, AuditEventSaysWhatIsEnforced) {
  ConfinementSpec s;
  s.rw_paths = {"/work"};
  s.ro_within_rw = {"/work/.git/hooks"};
  s.seccomp_allow_groups = {"ptrace"};
  s.limits.file_size = 4096;
  auto p = prepare(s);
  ASSERT_TRUE(p) << p.error().render();
  audit::MemorySink sink;
  sink.emit(confinement_event(*p, true));
  std::string line = sink.lines();
  EXPECT_NE(line.find(R"("type":"sandbox.confine")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("landlock_abi":)" + std::to_string(landlock_abi())), std::string::npos)
      << line;
  EXPECT_NE(line.find(R"("seccomp":"notify")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("seccomp_allow":["ptrace"])"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("protected":["/work/.git/hooks"])"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("rlimit_fsize":4096)"), std::string::npos) << line;
}

}  // namespace
}  // namespace agentbox::sandbox
