// Host resources with the built-in defaults only (--no-config, no limit flags): a fork bomb, a
// memory hog, tmpfs fillers, inode fillers and an inotify drain inside the box are each stopped,
// and while the box holds what it took, the host still answers (it forks /bin/true and opens
// an inotify instance as the same user). Functional oracles only: no timing is asserted here
// (bench/host_responsiveness.sh measures latency). Also: empty cgroups left by a supervisor
// killed with SIGKILL are removed at the next start, and the box ends when the process that
// started agentbox is killed.
#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;

uint64_t meminfo(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  uint64_t kib = 0;
  std::string unit;
  while (in >> k >> kib >> unit) {
    if (k == key + ":") {
      return kib << 10;
    }
  }
  return 0;
}

uint64_t read_u64(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return v;
}

// Forks a child as `uid`/`gid` that runs `what` and exits 0 on success: the host's answer.
bool host_as(const World& w, bool inotify) {
  pid_t p = ::fork();
  if (p == 0) {
    if (w.as.uid != 0 && (::setresgid(w.as.gid, w.as.gid, w.as.gid) != 0 ||
                          ::setresuid(w.as.uid, w.as.uid, w.as.uid) != 0)) {
      ::_exit(121);
    }
    if (inotify) {
      int fd = ::inotify_init1(IN_CLOEXEC);
      ::_exit(fd >= 0 && ::inotify_add_watch(fd, "/", IN_CREATE) >= 0 ? 0 : 1);
    }
    ::execl("/bin/true", "true", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return p > 0 && wait_for(p, 20000) == 0;
}

class DefaultsTest : public WorldTest {
 protected:
  void SetUp() override {
    if (!enter_world()) {
      return;
    }
    attack_ = w_.bin + "/agentbox-attack";
    std::filesystem::copy_file(AGENTBOX_ATTACK_BIN, attack_);
    ::chmod(attack_.c_str(), 0755);
    if (std::string no = cannot_box(w_, run(w_, {"run", "-q", "--", "true"})); !no.empty()) {
      skip(no);
    }
  }
  std::string attack_;
  Args flags_;                        // more flags for hold()'s `agentbox run`
  std::function<void()> while_held_;  // host-side checks while hold()'s box holds
  void TearDown() override {
    if (made_) {
      destroy_world(w_);
    }
  }

  // Runs python3 `code` in a box with the defaults. The code prints "held ..." once it holds
  // what it took and then waits (at most 20 s) for its stdin to close; meanwhile the host is
  // asked to fork /bin/true (and, with `inotify_check`, to open an inotify instance) as the same
  // user. Returns the box's stdout; its exit status goes to `status`, else it must be 0.
  std::string hold(const std::string& code, bool inotify_check, bool* host_answered,
                   int* status = nullptr) {
    return hold(Args{"/usr/bin/python3", "-c", code}, inotify_check, host_answered, status);
  }
  std::string hold(const Args& cmd, bool inotify_check, bool* host_answered,
                   int* status = nullptr) {
    int in[2];
    EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
    RunOptions o;
    o.stdin_fd = in[0];
    o.timeout_ms = 60000;
    int out = -1;
    int err = -1;
    Args args = {"run", "-q", "--no-config", "--ro", w_.bin};
    args.insert(args.end(), flags_.begin(), flags_.end());
    args.emplace_back("--");
    args.insert(args.end(), cmd.begin(), cmd.end());
    pid_t pid = spawn(w_, args, o, &out, &err);
    ::close(in[0]);
    std::string text;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(45);
    while (text.find("held") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{out, POLLIN, 0};
      if (::poll(&pfd, 1, 200) > 0) {
        char buf[4096];
        ssize_t n = ::read(out, buf, sizeof buf);
        if (n <= 0) {
          break;
        }
        text.append(buf, static_cast<size_t>(n));
      }
    }
    if (while_held_) {
      while_held_();
    }
    *host_answered = host_as(w_, false) && (!inotify_check || host_as(w_, true));
    ::close(in[1]);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out, buf, sizeof buf)) > 0) {
      text.append(buf, static_cast<size_t>(n));
    }
    std::string errs;
    while ((n = ::read(err, buf, sizeof buf)) > 0) {
      errs.append(buf, static_cast<size_t>(n));
    }
    ::close(out);
    ::close(err);
    int st = wait_for(pid, 60000);
    if (status != nullptr) {
      *status = st;
    } else {
      EXPECT_EQ(st, 0) << text << errs;
    }
    return text;
  }
};

// Waits on stdin (closed by the test once the host has answered), bounded.
constexpr const char* kWait = R"(
import select, sys
print("held", flush=True)
select.select([sys.stdin], [], [], 20)
)";

// Forks sleeping children until the kernel refuses (EAGAIN) or 3x the default is reached.
TEST_P(DefaultsTest, ForkBombIsStopped) {
  bool host = false;
  std::string out = hold({attack_, "fork_until_refused", "12288"}, false, &host);
  EXPECT_TRUE(host) << "the host could not fork /bin/true during the bomb";
  ASSERT_NE(out.find("bomb "), std::string::npos) << out;
  int n = std::stoi(out.substr(out.find("bomb ") + 5));
  EXPECT_LT(n, 4096) << "the fork bomb was not stopped by the default pids limit: " << out;
  EXPECT_NE(out.find(" 11\n"), std::string::npos) << "expected EAGAIN: " << out;
}

// Fills memory in 256 MiB steps until refused or killed; the default is half the RAM.
TEST_P(DefaultsTest, MemoryHogIsStopped) {
  uint64_t total = meminfo("MemTotal");
  uint64_t avail = meminfo("MemAvailable");
  if (avail < total / 2 + (uint64_t{3} << 30)) {
    skip("not enough free memory to reach the default memory limit (half the RAM) safely");
    return;
  }
  uint64_t bound_mib = (total / 2 + (uint64_t{512} << 20)) >> 20;
  // 256 MiB mappings, each faulted in by the kernel (MADV_POPULATE_WRITE, Linux 5.14; huge
  // pages when it can): as a writer would fill them, without a slow loop in Python.
  std::string code = R"(
import mmap
got = 0
maps = []
try:
    while got < )" + std::to_string(bound_mib) +
                     R"(:
        m = mmap.mmap(-1, 256 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            m.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
        try:
            m.madvise(23)
        except OSError as e:
            if e.errno != 22:
                raise
            m.write(b"\1" * (256 << 20))
        maps.append(m)
        got += 256
except (OSError, MemoryError):
    pass
print("hog", got, flush=True)
)" + kWait;
  bool host = false;
  int status = -1;
  std::string out = hold(code, false, &host, &status);
  EXPECT_TRUE(host) << "the host could not fork /bin/true during the hog";
  // Killed by the cgroup's OOM killer (status 137, no "hog" line), or refused by RLIMIT_DATA
  // ("hog N" below the bound).
  EXPECT_TRUE(status == 137 || status == 0) << status << ": " << out;
  EXPECT_TRUE(status == 137 || out.find("hog ") != std::string::npos) << out;
  if (out.find("hog ") != std::string::npos) {
    uint64_t got = std::stoull(out.substr(out.find("hog ") + 4));
    EXPECT_LT(got, bound_mib) << "the hog was not stopped by the default memory limit: " << out;
  }
}

// Fills HOME, /tmp and /dev/shm until ENOSPC, bounded at their default size + 64 MiB.
TEST_P(DefaultsTest, TmpfsFillIsStopped) {
  struct Case {
    std::string dir;
    uint64_t size_mib;
  };
  for (const Case& c : {Case{w_.as.home, 1024}, Case{"/tmp", 1024}, Case{"/dev/shm", 256}}) {
    std::string code = R"(
import errno, os
chunk = b"x" * (1 << 20)
got, err = 0, 0
with open(")" + c.dir + R"(/fill", "wb", buffering=0) as f:
    try:
        while got < )" +
                       std::to_string(c.size_mib + 64) +
                       R"(:
            f.write(chunk)
            got += 1
    except OSError as e:
        err = e.errno
print("fill", got, err, flush=True)
)" + kWait;
    bool host = false;
    std::string out = hold(code, false, &host);
    EXPECT_TRUE(host) << c.dir;
    EXPECT_NE(out.find(" 28\n"), std::string::npos)
        << c.dir << ": the filler was not stopped with ENOSPC: " << out;
  }
}

// Creates empty files until ENOSPC, bounded at twice the default inode cap (one per 4 KiB).
TEST_P(DefaultsTest, InodeFillIsStopped) {
  struct Case {
    std::string dir;
    uint64_t inodes;
  };
  for (const Case& c : {Case{"/dev/shm", 65536}, Case{w_.as.home, 262144}}) {
    std::string code = R"(
import os
d = ")" + c.dir + R"(/inodes"
os.mkdir(d)
n, err = 0, 0
while n < )" + std::to_string(2 * c.inodes) +
                       R"(:
    try:
        os.close(os.open(d + "/" + str(n), os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as e:
        err = e.errno
        break
    n += 1
print("inodes", n, err, flush=True)
)" + kWait;
    bool host = false;
    std::string out = hold(code, false, &host);
    EXPECT_TRUE(host) << c.dir;
    ASSERT_NE(out.find("inodes "), std::string::npos) << out;
    EXPECT_LE(std::stoull(out.substr(out.find("inodes ") + 7)), c.inodes) << c.dir << ": " << out;
    EXPECT_NE(out.find(" 28\n"), std::string::npos) << c.dir << ": expected ENOSPC: " << out;
  }
}

// Opens inotify instances (one watch each) until refused; meanwhile the same user on the host
// must still get one: the box's user namespace holds half of the user's limit.
TEST_P(DefaultsTest, InotifyDrainLeavesTheHostSome) {
  uint64_t host_max = read_u64("/proc/sys/user/max_inotify_instances");
  if (host_max < 4) {
    skip("max_inotify_instances is below 4 here");
    return;
  }
  std::string code = std::string(R"(
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fds, err = [], 0
while len(fds) < 100000:
    fd = libc.inotify_init1(0o2000000)
    if fd < 0:
        err = ctypes.get_errno()
        break
    libc.inotify_add_watch(fd, b"/", 0x100)
    fds.append(fd)
print("inotify", len(fds), err, flush=True)
)") + kWait;
  bool host = false;
  std::string out = hold(code, true, &host);
  EXPECT_TRUE(host) << "the host user could not open an inotify instance while the box held "
                    << out;
  ASSERT_NE(out.find("inotify "), std::string::npos) << out;
  EXPECT_LE(std::stoull(out.substr(out.find("inotify ") + 8)), host_max / 2) << out;
}

// The process that started agentbox is killed with SIGKILL (a CI step cancelled): the
// supervisor and the box end too, within a bound.
TEST_P(DefaultsTest, BoxEndsWhenTheParentIsKilled) {
  RunOptions o;
  o.wrapper = {"/bin/sh", "-c", "\"$@\"; exit 0", "sh"};
  int out = -1;
  int err = -1;
  pid_t shell =
      spawn(w_, {"run", "-q", "--no-config", "--", "/bin/sleep", "41.731"}, o, &out, &err);
  ASSERT_GT(shell, 0);
  auto running = [] { return !pids_with_cmdline("41.731").empty(); };
  for (int i = 0; i < 200 && pids_with_cmdline("/bin/sleep").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  bool box_ran = false;
  for (int i = 0; i < 200 && !box_ran; ++i) {
    box_ran = pids_with_cmdline("41.731").size() >= 2;  // the supervisor and the box's sleep
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(box_ran);
  ::kill(shell, SIGKILL);
  EXPECT_EQ(wait_for(shell, 5000), 128 + SIGKILL);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {  // 10 s: SIGTERM, then SIGKILL after 3 s
    gone = !running();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(gone) << "agentbox and its box outlived the parent that was killed";
  for (pid_t p : pids_with_cmdline("41.731")) {
    ::kill(p, SIGKILL);
  }
  ::close(out);
  ::close(err);
}

// A supervisor killed with SIGKILL leaves its session cgroup behind (empty: the box died with
// it); the next start removes it. Root only: no cgroup can be made for the user here.
TEST_P(DefaultsTest, StaleCgroupsAreRemovedAtTheNextStart) {
  if (w_.as.uid != 0) {
    skip(Need::cgroup_v2(),
         "the unprivileged user has a session cgroup only under a delegated "
         "cgroup v2 hierarchy, which this machine does not declare");
    return;
  }
  const std::string pids_root = "/sys/fs/cgroup/pids";
  if (!std::filesystem::exists(pids_root + "/cgroup.procs")) {
    skip("no cgroup v1 pids hierarchy at /sys/fs/cgroup/pids");
    return;
  }
  auto ours = [&] {
    std::vector<std::string> dirs;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(pids_root, ec)) {
      std::string name = e.path().filename();
      if (name.rfind("agentbox-", 0) == 0) {
        dirs.push_back(e.path());
      }
    }
    return dirs;
  };
  RunOptions o;
  int out = -1;
  int err = -1;
  pid_t sup = spawn(w_, {"run", "-q", "--no-config", "--", "/bin/sleep", "37.913"}, o, &out, &err);
  bool box_ran = false;
  for (int i = 0; i < 200 && !box_ran; ++i) {
    box_ran = pids_with_cmdline("37.913").size() >= 2;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(box_ran);
  std::string mine;
  for (const auto& d : ours()) {
    if (d.find("-p" + std::to_string(sup)) != std::string::npos) {
      mine = d;
    }
  }
  ASSERT_NE(mine, "") << "no session cgroup named after the supervisor";
  ::kill(sup, SIGKILL);
  EXPECT_EQ(wait_for(sup, 5000), 128 + SIGKILL);
  for (int i = 0; i < 100 && !pids_with_cmdline("37.913").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(std::filesystem::exists(mine)) << "the test proves nothing: no cgroup was left";
  Output next = run(w_, {"run", "-q", "--no-config", "--", "true"});
  EXPECT_EQ(next.status, 0) << next.err;
  EXPECT_FALSE(std::filesystem::exists(mine)) << mine << " was left behind";
  ::close(out);
  ::close(err);
}

// What the box says of its own CPU priority, and what it gets when it tries to undo it: lower its
// nice (to 0, or by one), raise RLIMIT_NICE, write a lower nice into its session's autogroup or
// into init's (init shares the user's session). A child is asked too (inherited).
constexpr const char* kCpuPriority = R"(
import os, resource
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return "errno%d" % e.errno
    except ValueError:
        return "refused"
def write(path, text):
    with open(path, "w") as f:
        f.write(text)
print("nice", os.getpriority(os.PRIO_PROCESS, 0))
print("rlimit_nice", *resource.getrlimit(resource.RLIMIT_NICE))
print("lower", attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, 0)))
print("lower_by_one", attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, 9)))
print("raise_rlimit", attempt(lambda: resource.setrlimit(resource.RLIMIT_NICE, (40, 40))))
print("autogroup_self", attempt(lambda: write("/proc/self/autogroup", "0")))
print("autogroup_init", attempt(lambda: write("/proc/1/autogroup", "0")))
pid = os.fork()
if pid == 0:
    print("child_nice", os.getpriority(os.PRIO_PROCESS, 0), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
)";

// The nice of a host process: field 19 of /proc/PID/stat.
int host_nice(pid_t pid) {
  std::string stat = slurp(fmt::format("/proc/{}/stat", pid));
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 19 && in >> field; ++i) {
  }
  return field.empty() ? -100 : std::stoi(field);
}

// The CPU weight of the v1 cpu cgroup a host process is in, when it is a session cgroup of
// agentbox's ("" otherwise: no cpu hierarchy, or not root).
std::string session_cpu_shares(pid_t pid) {
  std::istringstream in(slurp(fmt::format("/proc/{}/cgroup", pid)));
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    std::string ctrls = "," + line.substr(a + 1, b - a - 1) + ",";
    std::string path = line.substr(b + 1);
    if (ctrls.find(",cpu,") != std::string::npos && path.find("/agentbox-") != std::string::npos) {
      for (const char* m : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
        std::string v = slurp(std::string(m) + path + "/cpu.shares");
        if (!v.empty()) {
          return v.substr(0, v.find('\n'));
        }
      }
    }
  }
  return "";
}

// limits.cpu_priority (default "background"): every process of the box at nice 10 with
// RLIMIT_NICE 0, its session's autogroup at nice 10, and (root, v1 cpu hierarchy) its session
// cgroup at cpu.shares 110, all read from the host; the box can lower none of it. With
// --cpu-priority normal none of it is applied.
TEST_P(DefaultsTest, BoxRunsAtBackgroundCpuPriorityAndCannotRaiseIt) {
  for (bool background : {true, false}) {
    SCOPED_TRACE(background ? "default (background)" : "--cpu-priority normal");
    flags_ = background ? Args{} : Args{"--cpu-priority", "normal"};
    const std::string marker = background ? "cpu-prio-bg-3141" : "cpu-prio-normal-3141";
    int nice = -100;
    std::string autogroup;
    std::string shares;
    while_held_ = [&] {
      std::vector<pid_t> pids = pids_with_cmdline(marker);  // the supervisor, init, python
      std::erase_if(pids, [](pid_t p) {
        return slurp(fmt::format("/proc/{}/comm", p)).rfind("python3", 0) != 0;
      });
      ASSERT_EQ(pids.size(), 1u) << "the box's python, by its marker";
      nice = host_nice(pids[0]);
      shares = session_cpu_shares(pids[0]);
      // init writes the autogroup's nice once the program runs; the kernel lets that happen
      // once per 100 ms machine-wide, so it may take a few tries.
      for (int i = 0; i < 150; ++i) {
        autogroup = slurp(fmt::format("/proc/{}/autogroup", pids[0]));
        if (!background || autogroup.find(" nice 10") != std::string::npos) {
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    };
    bool host = false;
    std::string out = hold(
        Args{"/usr/bin/python3", "-c", std::string(kCpuPriority) + kWait, marker}, false, &host);
    EXPECT_TRUE(host);
    if (autogroup.empty()) {
      skip("this kernel has no scheduler autogroup (CONFIG_SCHED_AUTOGROUP)");
      return;
    }
    if (background) {
      EXPECT_EQ(nice, 10) << "seen from the host";
      EXPECT_NE(autogroup.find(" nice 10"), std::string::npos) << autogroup;
      EXPECT_NE(out.find("nice 10\n"), std::string::npos) << out;
      EXPECT_NE(out.find("child_nice 10\n"), std::string::npos) << out;
      EXPECT_NE(out.find("rlimit_nice 0 0\n"), std::string::npos) << out;
      for (const char* undo :
           {"lower", "lower_by_one", "raise_rlimit", "autogroup_self", "autogroup_init"}) {
        EXPECT_EQ(out.find(std::string(undo) + " ok\n"), std::string::npos)
            << undo << " succeeded inside the box:\n"
            << out;
      }
      if (!shares.empty()) {
        EXPECT_EQ(shares, "110");
      }
    } else {
      // (The host sees nice 9 by now: raising one's own nice needs no privilege.)
      EXPECT_EQ(out.rfind("nice 0\n", 0), 0u) << out;
      EXPECT_NE(autogroup.find(" nice 0"), std::string::npos) << autogroup;
      if (!shares.empty()) {
        EXPECT_EQ(shares, "1024");
      }
    }
    if (w_.as.uid == 0 && background) {
      EXPECT_FALSE(shares.empty()) << "root: no session cgroup with a cpu hierarchy was seen";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(As, DefaultsTest,
                         ::testing::Values(std::string("root"), std::string("user")),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
