// Capabilities: after CapDrop::apply() every set is empty, securebits are locked, and root (even
// through a setuid-root binary) gains nothing at execve.
#include "agentbox/sandbox/caps.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/securebits.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "agentbox/base/sys.hpp"
#include "child.hpp"
#include "testkit/skip.hpp"

namespace agentbox::sandbox {
namespace {

using testing::become_root_in_userns;
using testing::describe;
using testing::run_in_child;

// "CapEff:\t0000..." -> the hex value for each Cap* line of /proc/self/status.
std::string cap_lines(const std::string& status) {
  std::string out;
  size_t pos = 0;
  while ((pos = status.find("\nCap", pos)) != std::string::npos) {
    size_t end = status.find('\n', pos + 1);
    out += status.substr(pos + 1, end - pos - 1) + "\n";
    pos = end;
  }
  return out;
}

TEST(Caps, DropsEverySetAndLocksSecurebits) {
  auto drop = CapDrop::prepare();
  ASSERT_TRUE(drop) << drop.error().render();
  auto control = run_in_child([] {
    if (!become_root_in_userns()) {
      return 100;
    }
    auto s = base::read_file("/proc/self/status");
    return s && cap_lines(*s).find("CapEff:\t0000000000000000") == std::string::npos ? 0 : 1;
  });
  ASSERT_TRUE(control.exited && control.code == 0)
      << "control holds no caps: " << describe(control);
  auto r = run_in_child([&] {
    if (!become_root_in_userns()) {
      return 100;
    }
    if (int err = drop->apply(); err != 0) {
      return 101;
    }
    auto s = base::read_file("/proc/self/status");
    if (!s) {
      return 102;
    }
    std::string caps = cap_lines(*s);
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
      if (caps.find(std::string(set) + ":\t0000000000000000") == std::string::npos) {
        fprintf(stderr, "%s", caps.c_str());
        return 103;
      }
    }
    constexpr int kWant = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                          SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                          SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if ((prctl(PR_GET_SECUREBITS) & kWant) != kWant) {
      return 104;
    }
    // Locked: cannot be undone, and nothing can be raised back.
    if (prctl(PR_SET_SECUREBITS, 0) == 0 ||
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 0, 0, 0) == 0) {
      return 105;
    }
    cap_t now = cap_get_proc();
    cap_t empty = cap_init();
    int same = cap_compare(now, empty);
    cap_free(now);
    cap_free(empty);
    return same == 0 ? 0 : 106;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

// Runs `argv[0]` (expected to print /proc/self/status) in a child after an optional drop, and
// returns its CapEff line.
std::string exec_and_read_capeff(const std::string& exe, const CapDrop* drop) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return "pipe failed";
  }
  pid_t pid = fork();
  if (pid == 0) {
    alarm(10);
    dup2(p[1], 1);
    if (drop != nullptr && drop->apply() != 0) {
      _exit(100);
    }
    execl(exe.c_str(), exe.c_str(), "/proc/self/status", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(p[1]);
  base::UniqueFd rd(p[0]);
  std::string out = base::read_all(rd.get()).value_or("");
  waitpid(pid, nullptr, 0);
  size_t at = out.find("CapEff:");
  return at == std::string::npos ? "no output" : out.substr(at, out.find('\n', at) - at);
}

TEST(Caps, RootAndSetuidRootGainNothingAtExec) {
  if (geteuid() != 0) {
    testkit::skip(
        "needs real root to create a setuid-root file (covered by the caps test inside a user "
        "namespace)");
    return;
  }
  char tmpl[] = "/tmp/agentbox-caps-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string cat = dir + "/cat";
  std::filesystem::copy_file("/bin/cat", cat);
  ASSERT_EQ(chmod(cat.c_str(), 04755), 0);
  auto drop = CapDrop::prepare();
  ASSERT_TRUE(drop);
  std::string control = exec_and_read_capeff(cat, nullptr);
  std::string dropped = exec_and_read_capeff(cat, &*drop);
  std::filesystem::remove_all(dir);
  EXPECT_NE(control, "CapEff:\t0000000000000000") << "control: root should hold caps";
  EXPECT_EQ(dropped, "CapEff:\t0000000000000000");
}

}  // namespace
}  // namespace agentbox::sandbox
