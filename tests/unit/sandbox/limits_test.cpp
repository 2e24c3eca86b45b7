// Limits: the rlimit fallback (FSIZE, AS, NPROC, CORE) and the session cgroup (memory, pids).
#include "agentbox/sandbox/limits.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "agentbox/base/sys.hpp"
#include "child.hpp"
#include "testkit/skip.hpp"

namespace agentbox::sandbox {
namespace {

using testing::describe;
using testing::errno_of;
using testing::run_in_child;

TEST(Rlimits, FallbackOnlyWithoutCgroup) {
  Limits with = rlimits_for(1 << 30, 64, 1 << 20, 1024, true);
  EXPECT_FALSE(with.address_space);
  EXPECT_FALSE(with.processes);
  EXPECT_EQ(with.file_size, 1u << 20);
  EXPECT_EQ(with.open_files, 1024u);
  Limits without = rlimits_for(1 << 30, 64, std::nullopt, std::nullopt, false);
  EXPECT_EQ(without.address_space, 1u << 30);
  EXPECT_EQ(without.processes, 64u);
}

// apply_nice: the nice is set and RLIMIT_NICE is 0, so even nice 0 is refused again (EACCES);
// without a nice, nothing changes. Ground truth from getpriority/getrlimit in the same child.
TEST(Rlimits, NiceCannotBeLoweredAgain) {
  auto r = run_in_child([] {
    if (apply_nice({.nice = 10}) != 0) {
      return 100;
    }
    rlimit rl{};
    errno = 0;
    if (getpriority(PRIO_PROCESS, 0) != 10 || errno != 0 || getrlimit(RLIMIT_NICE, &rl) != 0 ||
        rl.rlim_cur != 0 || rl.rlim_max != 0) {
      return 101;
    }
    if (geteuid() != 0 && setpriority(PRIO_PROCESS, 0, 9) == 0) {
      return 102;  // (root keeps CAP_SYS_NICE here: the box drops it, tests/attacks check that)
    }
    return apply_nice({}) == 0 ? 0 : 103;  // no nice asked: nothing to do
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

// Started already niced past the target (`nice -n 19 agentbox run`), the box keeps the lower
// priority: lowering the nice would need CAP_SYS_NICE, and an unprivileged start failed with
// EACCES here before.
TEST(Rlimits, AHigherNiceIsKept) {
  auto r = run_in_child([] {
    if (setpriority(PRIO_PROCESS, 0, 15) != 0) {
      return 99;
    }
    // As root, become an unprivileged uid (setresuid clears the capabilities, CAP_SYS_NICE too).
    if (geteuid() == 0 && setresuid(65534, 65534, 65534) != 0) {
      return 98;
    }
    if (apply_nice({.nice = 10}) != 0) {
      return 100;
    }
    errno = 0;
    return getpriority(PRIO_PROCESS, 0) == 15 && errno == 0 ? 0 : 101;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

// set_autogroup_nice only touches a process that leads its own session: never the caller's
// session (for init, the user's). Read back from /proc/PID/autogroup.
TEST(Autogroup, NiceOnlyForASessionLeader) {
  if (access("/proc/self/autogroup", F_OK) != 0) {
    testkit::skip("no scheduler autogroup in this kernel (CONFIG_SCHED_AUTOGROUP)");
    return;
  }
  int go[2];
  ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
  auto spawn = [&](bool leader) {
    pid_t pid = fork();
    if (pid == 0) {
      close(go[1]);  // EOF on go[0] once the test closes its end
      if (leader) {
        setsid();
      }
      char c;
      (void)!read(go[0], &c, 1);
      _exit(0);
    }
    return pid;
  };
  pid_t follower = spawn(false);
  pid_t leader = spawn(true);
  ASSERT_GT(follower, 0);
  ASSERT_GT(leader, 0);
  for (int i = 0; i < 200 && getsid(leader) != leader; ++i) {
    usleep(5000);
  }
  EXPECT_EQ(set_autogroup_nice(follower, 7), ESRCH);
  int err = EAGAIN;
  for (int i = 0; i < 100 && err == EAGAIN; ++i) {  // the kernel's 100 ms rate limit
    err = set_autogroup_nice(leader, 7);
    if (err == EAGAIN) {
      usleep(20000);
    }
  }
  EXPECT_EQ(err, 0) << strerror(err);
  std::string ag = base::read_file("/proc/" + std::to_string(leader) + "/autogroup").value_or("");
  EXPECT_NE(ag.find(" nice 7"), std::string::npos) << ag;
  std::string own = base::read_file("/proc/self/autogroup").value_or("");
  EXPECT_EQ(own.find(" nice 7"), std::string::npos) << "the caller's own session changed: " << own;
  close(go[1]);
  close(go[0]);
  waitpid(follower, nullptr, 0);
  waitpid(leader, nullptr, 0);
}

int write_big_file(const char* path) {
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    return 200;
  }
  std::vector<char> buf(8192, 'x');
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = write(fd, buf.data() + done, buf.size() - done);
    if (n < 0) {
      return errno;
    }
    done += static_cast<size_t>(n);
  }
  return 0;
}

TEST(Rlimits, FileSizeGivesEfbig) {
  char path[] = "/tmp/agentbox-fsize-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  auto control = run_in_child([&] { return write_big_file(path); });
  EXPECT_TRUE(control.exited && control.code == 0) << describe(control);
  auto r = run_in_child([&] {
    if (apply_rlimits({.file_size = 4096}) != 0) {
      return 100;
    }
    signal(SIGXFSZ, SIG_IGN);  // else the default action kills the writer
    return write_big_file(path);
  });
  EXPECT_TRUE(r.exited && r.code == EFBIG) << describe(r);
  struct stat st {};
  ASSERT_EQ(stat(path, &st), 0);
  EXPECT_EQ(st.st_size, 4096) << "ground truth: the file stopped at the limit";
  unlink(path);
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

TEST(Rlimits, AddressSpaceStopsAllocation) {
  if (kAsan) {
    testkit::skip(testkit::Need::build_without_asan(),
                  "ASan reserves terabytes of address space; RLIMIT_AS breaks it");
    return;
  }
  auto probe = [] {
    void* p =
        mmap(nullptr, size_t{1} << 30, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? errno : 0;
  };
  auto control = run_in_child(probe);
  EXPECT_TRUE(control.exited && control.code == 0) << describe(control);
  auto r = run_in_child([&] {
    if (apply_rlimits({.address_space = 256u << 20}) != 0) {
      return 100;
    }
    return probe();
  });
  EXPECT_TRUE(r.exited && r.code == ENOMEM) << describe(r);
}

TEST(Rlimits, CoreIsAlwaysZero) {
  auto r = run_in_child([] {
    rlimit big{.rlim_cur = RLIM_INFINITY, .rlim_max = RLIM_INFINITY};
    (void)setrlimit(RLIMIT_CORE, &big);  // may fail unprivileged; the point is the result
    if (apply_rlimits({}) != 0) {
      return 100;
    }
    rlimit now{};
    getrlimit(RLIMIT_CORE, &now);
    return now.rlim_cur == 0 && now.rlim_max == 0 ? 0 : 1;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

// Forks up to `tries` sleepers; returns how many forks succeeded (they die with their parent).
int count_forks(int tries) {
  int ok = 0;
  for (int i = 0; i < tries; ++i) {
    pid_t p = fork();
    if (p == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      alarm(10);
      pause();
      _exit(0);
    }
    if (p < 0) {
      break;
    }
    ++ok;
  }
  return ok;
}

TEST(Rlimits, NprocStopsForksOfANonRootUser) {
  if (geteuid() != 0) {
    testkit::skip(
        "needs root to switch to an otherwise idle uid (RLIMIT_NPROC counts every process of the "
        "real uid on the machine)");
    return;
  }
  constexpr uid_t kNobody = 65534;
  auto control = run_in_child([] {
    if (setresuid(kNobody, kNobody, kNobody) != 0) {
      return 100;
    }
    return count_forks(20) == 20 ? 0 : 1;
  });
  EXPECT_TRUE(control.exited && control.code == 0) << describe(control);
  auto r = run_in_child([] {
    if (setresuid(kNobody, kNobody, kNobody) != 0 || apply_rlimits({.processes = 8}) != 0) {
      return 100;
    }
    int n = count_forks(20);
    return n < 8 ? 0 : 1;  // the limit includes this process and any other nobody's
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

// ---- session cgroup -------------------------------------------------------------------------

std::string unique_name() {
  return "agentbox-test-" + std::to_string(getpid()) + "-" + std::to_string(rand());  // NOLINT
}

// Starts a child that waits for a byte, then runs `f`; returns {pid, write end}.
template <class F>
std::pair<pid_t, int> start_gated(F f) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return {-1, -1};
  }
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(20);
    char b;
    if (read(p[0], &b, 1) != 1) {
      _exit(101);
    }
    _exit(f());
  }
  close(p[0]);
  return {pid, p[1]};
}

int release_and_wait(std::pair<pid_t, int> child) {
  (void)!write(child.second, "g", 1);
  close(child.second);
  int status = 0;
  waitpid(child.first, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

void exercise(const SessionCgroup& cg) {
  // Memory: touch 256 MiB against a 32 MiB limit -> OOM-killed (SIGKILL).
  auto hog = start_gated([] {
    constexpr size_t kSize = size_t{256} << 20;
    auto* p = static_cast<volatile char*>(malloc(kSize));
    if (p == nullptr) {
      return 2;
    }
    for (size_t i = 0; i < kSize; i += 4096) {
      p[i] = 1;
    }
    return 0;
  });
  ASSERT_GT(hog.first, 0);
  ASSERT_TRUE(cg.add(hog.first));
  EXPECT_EQ(release_and_wait(hog), 1000 + SIGKILL);
  // Pids: 16 allowed; 40 forks must stop early.
  auto forker = start_gated([] { return count_forks(40) < 16 ? 0 : 1; });
  ASSERT_GT(forker.first, 0);
  ASSERT_TRUE(cg.add(forker.first));
  EXPECT_EQ(release_and_wait(forker), 0);
  auto ev = cg.events();
  ASSERT_TRUE(ev) << ev.error().render();
  EXPECT_GE(ev->oom_kills, 1u);
  EXPECT_GE(ev->pids_max, 1u);
}

bool unified_root() {
  struct statfs st {};
  return statfs("/sys/fs/cgroup", &st) == 0 && st.f_type == 0x63677270;  // CGROUP2_SUPER_MAGIC
}

// The cgroup mode a session gets on this host: a failure to make one is a failure where the
// machine declares that mode (AGENTBOX_REQUIRE_CGROUP), else not applicable here.
testkit::Need host_cgroup_mode() {
  return unified_root() ? testkit::Need::cgroup_v2() : testkit::Need::cgroup_v1();
}

void check_cgroup(const CgroupOptions& options, const char* what, const testkit::Need& need) {
  auto cg = SessionCgroup::create(unique_name(), {.memory_bytes = 32u << 20, .pids = 16}, options);
  if (!cg) {
    testkit::skip(need, std::string("no ") + what + ": " + cg.error().message());
    return;
  }
  exercise(*cg);
  std::vector<std::string> dirs = cg->dirs();
  cg->destroy();
  for (const auto& d : dirs) {
    struct stat st {};
    EXPECT_NE(stat(d.c_str(), &st), 0) << d << " left behind";
  }
}

TEST(SessionCgroup, EnforcesMemoryAndPids) {
  check_cgroup({}, "session cgroup (v2 delegation, or v1 as root)", host_cgroup_mode());
}

// Hybrid hosts (cgroup v1 memory/pids, as on the CI VM) cannot offer v2 controllers at all: a
// machine that declares AGENTBOX_REQUIRE_CGROUP=v2 must pass this one.
TEST(SessionCgroup, V2Delegated) {
  check_cgroup({.allow_v2 = true, .allow_v1 = false}, "cgroup v2 delegation",
               testkit::Need::cgroup_v2());
}

TEST(SessionCgroup, V1AsRoot) {
  if (geteuid() != 0) {
    testkit::skip("needs root: cgroup v1 is only used by root");
    return;
  }
  check_cgroup({.allow_v2 = false, .allow_v1 = true}, "cgroup v1 hierarchy",
               testkit::Need::cgroup_v1());
}

TEST(SessionCgroup, BadNameIsRefused) {
  EXPECT_FALSE(SessionCgroup::create("../escape", {}));
  EXPECT_FALSE(SessionCgroup::create("", {}));
}

}  // namespace
}  // namespace agentbox::sandbox

namespace agentbox::sandbox {
namespace {

// The agent joins the session cgroup itself, from inside new user and cgroup namespaces, through
// an fd the supervisor opened: nothing it forks later can start outside the cgroup.
TEST(SessionCgroup, ChildJoinsThroughAnFdFromInsideItsNamespaces) {
  auto cg = SessionCgroup::create(unique_name(), {.pids = 64});
  if (!cg) {
    testkit::skip(host_cgroup_mode(), "no session cgroup: " + cg.error().message());
    return;
  }
  auto fds = cg->open_procs();
  ASSERT_TRUE(fds) << fds.error().render();
  std::vector<int> raw;
  for (const auto& fd : *fds) {
    raw.push_back(fd.get());
  }
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(10);
    if (unshare(CLONE_NEWUSER | CLONE_NEWCGROUP) != 0) {
      _exit(100);
    }
    if (join_cgroup(raw.data(), raw.size()) != 0) {
      _exit(101);
    }
    pause();
    _exit(0);
  }
  ASSERT_GT(pid, 0);
  bool found = false;
  for (int i = 0; i < 200 && !found; ++i) {
    std::string procs = base::read_file(cg->dirs()[0] + "/cgroup.procs").value_or("");
    found = ("\n" + procs).find("\n" + std::to_string(pid) + "\n") != std::string::npos;
    if (!found) {
      usleep(10000);
    }
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(found) << "child " << pid << " did not join; status " << status;
}

}  // namespace
}  // namespace agentbox::sandbox
