// Integration harness: runs the real agentbox binary as a chosen user, with bounded waits.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "testkit/skip.hpp"

namespace agentbox::it {

// The one skip helper (tests/testkit/skip.hpp), under the names the suites use.
using testkit::must_work;
using testkit::Need;
using testkit::skip;

// Who runs agentbox in a test: root, or the unprivileged test user (when the harness is root),
// or the current user (when it is not).
struct RunAs {
  std::string label;  // "root" or "user"
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
  std::string home;  // HOME for agentbox (a private dir for root, the real home for the user)
};

// One variant's private world under /tmp, readable by that user:
//   ROOT/bin/{agentbox,agentbox-probe,agentbox-unconfined}  ROOT/ws (a git-like workspace)
//   ROOT/state (audit logs)
// agentbox is the binary under test: the build's, or $AGENTBOX_TEST_BIN (the test of the tests
// points it at a deliberately broken build, tests/meta/broken_binary.sh).
struct World {
  RunAs as;
  std::string root;
  std::string bin;
  std::string probe;  // path of the probe (granted read-only into the box)
  std::string agentbox;
  // The test-only build that honours AGENTBOX_UNSAFE_BENCH_UNCONFINED=1 (tests/CMakeLists.txt);
  // `agentbox` itself never does.
  std::string agentbox_unconfined;
  std::string ws;
  std::string state;
};

struct Output {
  int status = -1;  // exit code, or 128+N when killed by signal N; -1 when timed out
  std::string out;
  std::string err;
  [[nodiscard]] bool has_line(const std::string& line) const;
  [[nodiscard]] std::string line_starting(const std::string& prefix) const;
};

struct RunOptions {
  std::map<std::string, std::string> env;  // added to HOME/PATH/XDG_STATE_HOME
  int stdin_fd = -1;                       // default /dev/null
  int stdout_fd = -1;                      // default: captured
  int stderr_fd = -1;                      // default: captured
  std::vector<int> leak_fds;               // opened without CLOEXEC in the child (fd numbers)
  int timeout_ms = 30000;
  std::string cwd;                   // default: the workspace
  std::vector<std::string> wrapper;  // runs `wrapper... agentbox args...` instead
  // Runs in the forked child, still as the harness's user (root), before switching to the
  // variant's user and exec: setns into a test network namespace, private mounts, ... Must only
  // make system calls (the harness may have threads). false -> the child exits with 120.
  std::function<bool()> before_exec;
};

// The variant (root / user). Creates the user `agentbox-test` when root and it is missing.
// Returns false with `why` when the variant cannot run here (not root, ...).
bool make_world(const std::string& label, World& world, std::string& why);
void destroy_world(const World& world);

// Starts agentbox with `args` (after "agentbox"), returns its pid; `out`/`err` pipes when captured.
pid_t spawn(const World& w, const std::vector<std::string>& args, const RunOptions& o, int* out_fd,
            int* err_fd);
// Runs to completion (bounded by o.timeout_ms; SIGKILL on timeout).
Output run(const World& w, const std::vector<std::string>& args, const RunOptions& o = {});
// `toml` as the user's config (ROOT/config/agentbox/config.toml, owned by the variant's user),
// and options whose XDG_CONFIG_HOME points at it.
RunOptions with_user_config(const World& w, const std::string& toml);
// Waits for `pid` at most timeout_ms; returns the shell-style status or -1.
int wait_for(pid_t pid, int timeout_ms);

// Host facts.
std::vector<pid_t> pids_with_cmdline(const std::string& needle);
size_t mountinfo_lines();
// The host's mount table (mount point and source fields of /proc/self/mountinfo), one per line.
std::vector<std::string> mount_table();
void chown_tree(const std::string& path, uid_t uid, gid_t gid);
void write_file(const std::string& path, const std::string& data, mode_t mode = 0644);
// The whole file ("" when it cannot be read).
std::string slurp(const std::string& path);
// `sh -c CMD` (fixed strings built by a test); the exit status, or -1 when killed.
int sh(const std::string& cmd);
// A TCP port on 127.0.0.1 that was free a moment ago (bound, read, closed), or 0.
uint16_t free_port();

// Base of the suites whose every case runs as root and as the unprivileged user (the
// parameter): enter_world() in SetUp makes w_, or skips visibly with the reason.
class WorldTest : public ::testing::TestWithParam<std::string> {
 protected:
  // False after skip(why) when the world cannot be made (SetUp then returns).
  bool enter_world();
  World w_;
  bool made_ = false;  // TearDown destroys w_ only then
};

// "" when `probe` (a `run ... -- true` of the variant) worked. Otherwise non-empty, and the caller
// calls skip() with it and returns: it is a skip only when this machine cannot make a box (checked
// by the harness itself, as the variant's user: user namespaces, /dev/net/tun, seccomp; the text
// then has agentbox doctor's reason). Any other failure (a crash, a timeout, status 125 on a
// machine that can make a box) is recorded here as a test failure, and skip() is then a no-op.
std::string cannot_box(const World& w, const Output& probe);
// "" when this machine lets the variant's user make what a box needs, else which step the kernel
// refused and why (the harness's own probe, independent of agentbox's messages).
std::string environment_refuses_box(const World& w);

// A WorldTest whose SetUp also checks that a box can be made for the variant (else a visible
// skip) and whose TearDown destroys the world.
class BoxWorldTest : public WorldTest {
 protected:
  void SetUp() override;
  void TearDown() override;
};
// The audit log named by the exit summary's "audit log: PATH" line in `o.err` ("" without one).
std::string audit_log_of(const Output& o);
// Every audit log of the world's sessions, concatenated.
std::string all_audit_logs(const World& w);

}  // namespace agentbox::it
