// Confinement seen from inside the real box: nested sandboxes with and without
// `--allow-syscalls userns`, agentbox inside agentbox, and syscall numbers above the build's
// ceiling. As root and as the unprivileged user.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;

// bubblewrap as an agent's own sandbox uses it (Codex's bwrap pipeline: the whole tree
// read-only, every namespace new). `--proc` is left out: see NestedProcMountIsRefused.
const Args kBwrap = {"bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/",  "/",
                     "--dev", "/dev",          "--tmpfs",           "/tmp",      "--", "/bin/true"};
const Args kUnshare = {"unshare", "-Ur", "--", "/bin/true"};

class NestedTest : public BoxWorldTest {
 protected:
  Output box(const Args& flags, const Args& cmd) {
    Args a = {"run", "-q"};
    a.insert(a.end(), flags.begin(), flags.end());
    a.push_back("--");
    a.insert(a.end(), cmd.begin(), cmd.end());
    return run(w_, a);
  }
};

// The opt-in delivers: unshare -Ur (a user namespace and its uid map) and bubblewrap (mounts,
// pivot_root) work inside the box. As root they cannot: mapping the parent's uid 0 needs
// CAP_SETFCAP (verify_root_map(), Linux 5.12+), which the box never keeps; agentbox says so.
TEST_P(NestedTest, UsernsOptInRunsBwrapAndUnshare) {
  Output u = box({"--allow-syscalls", "userns"}, kUnshare);
  Output b = box({"--allow-syscalls", "userns"}, kBwrap);
  if (w_.as.uid == 0) {
    EXPECT_NE(u.status, 0) << u.err;
    EXPECT_NE(u.err.find("uid_map: Operation not permitted"), std::string::npos) << u.err;
    EXPECT_NE(b.status, 0) << b.err;
    EXPECT_NE(b.err.find("setting up uid map: Operation not permitted"), std::string::npos)
        << b.err;
    Output said = run(w_, {"run", "--allow-syscalls", "userns", "--", "true"});
    EXPECT_NE(said.err.find("agentbox: warning: seccomp: `userns` as root: a nested user "
                            "namespace cannot map uid 0"),
              std::string::npos)
        << said.err;
    return;
  }
  EXPECT_EQ(u.status, 0) << u.err;
  EXPECT_EQ(b.status, 0) << b.err;
  // The nested sandbox really is one: its read-only / refuses a write to the workspace.
  Output w =
      box({"--allow-syscalls", "userns"}, {"bwrap", "--unshare-all", "--ro-bind", "/", "/", "--",
                                           "/bin/sh", "-c", "echo x > " + w_.ws + "/nested-write"});
  EXPECT_NE(w.status, 0) << w.err;
  EXPECT_NE(w.err.find("Read-only file system"), std::string::npos) << w.err;
}

// Without the opt-in both are refused, as before.
TEST_P(NestedTest, DefaultBoxRefusesBwrapAndUnshare) {
  Output u = box({}, kUnshare);
  EXPECT_NE(u.status, 0) << u.err;
  EXPECT_NE(u.err.find("unshare failed: Operation not permitted"), std::string::npos) << u.err;
  Output b = box({}, kBwrap);
  EXPECT_NE(b.status, 0) << b.err;
  EXPECT_NE(b.err.find("bwrap: "), std::string::npos) << b.err;
}

// What the opt-in costs is what it says: in a nested user and mount namespace (root of it as
// the user; unmapped but capable in it as root) the box's read-only binds cannot be remounted
// writable or unmounted (the kernel locks copied mounts), and a file under /usr cannot be made.
TEST_P(NestedTest, UsernsOptInKeepsTheBoxsReadOnlyTree) {
  const char* py =
      "import ctypes, os\n"
      "libc = ctypes.CDLL(None, use_errno=True)\n"
      "r = libc.mount(None, b'/usr', None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND, not ro\n"
      "print('REMOUNTED' if r == 0 else 'remount refused', ctypes.get_errno())\n"
      "r = libc.umount2(b'/usr', 2)  # MNT_DETACH\n"
      "print('UNMOUNTED' if r == 0 else 'umount refused', ctypes.get_errno())\n"
      "try:\n"
      "    open('/usr/agentbox-nested', 'w'); print('WROTE')\n"
      "except OSError as e:\n"
      "    print('write refused', e.errno)\n";
  Args unshare = {"unshare", w_.as.uid == 0 ? "-Um" : "-Urm", "--", "python3", "-c", py};
  Output r = box({"--allow-syscalls", "userns"}, unshare);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("remount refused"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(r.out.find("REMOUNTED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("UNMOUNTED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("WROTE"), std::string::npos) << r.out;
}

// A nested proc mount is refused by the kernel: the box's /proc has read-only binds over
// sys, sysrq-trigger, irq and bus (so a box run by root cannot rewrite kernel.core_pattern), and
// the kernel mounts a new proc only where the existing one is fully visible. Codex retries
// without --proc; binding the box's own /proc works.
TEST_P(NestedTest, NestedProcMountIsRefused) {
  if (w_.as.uid == 0) {
    skip(Need::feature("NESTED_ROOT_UIDMAP", "a nested uid map as root (never: CAP_SETFCAP)"),
         "as root no nested user namespace gets a uid map (UsernsOptInRunsBwrapAndUnshare checks "
         "that refusal)");
    return;
  }
  Args cmd = kBwrap;
  cmd.insert(cmd.begin() + 1, {"--proc", "/proc"});
  Output r = box({"--allow-syscalls", "userns"}, cmd);
  EXPECT_NE(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("Can't mount proc on /newroot/proc"), std::string::npos) << r.err;
  Args bound = kBwrap;
  bound.insert(bound.begin() + 1, {"--ro-bind", "/proc", "/proc"});
  Output ok = box({"--allow-syscalls", "userns"}, bound);
  EXPECT_EQ(ok.status, 0) << ok.err;
}

// agentbox inside agentbox: one line that says what is happening, not a bare clone3 ENOSYS,
// with and without the opt-in (with it, the inner box's /proc mount is what the kernel refuses).
TEST_P(NestedTest, AgentboxInsideAgentboxSaysWhy) {
  for (const Args& flags : {Args{}, Args{"--allow-syscalls", "userns"}}) {
    Args a = flags;
    a.insert(a.end(), {"--ro", w_.bin});
    Output r = box(a, {"/bin/sh", "-c",
                       "mkdir /tmp/w && cd /tmp/w && exec " + w_.agentbox + " run -q -- true"});
    EXPECT_EQ(r.status, 125) << r.err;
    EXPECT_EQ(r.err.find("ENOSYS"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("\nhint: this is an agentbox box, and agentbox does not run inside "
                         "agentbox: the outer box refuses new namespaces, and with "
                         "`--allow-syscalls userns`"),
              std::string::npos)
        << r.err;
  }
}

// Syscall numbers above the highest this build reviewed are ENOSYS in the real box, up to 1023
// (tests/unit/sandbox/seccomp_ceiling_test.cpp shows the filter, not the kernel, answers).
TEST_P(NestedTest, SyscallsAboveTheCeilingAreEnosys) {
  const char* py =
      "import ctypes, errno, sys\n"
      "libc = ctypes.CDLL(None, use_errno=True)\n"
      "bad = [n for n in range(470, 1024)\n"
      "       if libc.syscall(n, 0, 0, 0, 0, 0, 0) != -1 or ctypes.get_errno() != errno.ENOSYS]\n"
      "print('not ENOSYS:', bad)\n"
      "sys.exit(1 if bad else 0)\n";
  Output r = box({}, {"python3", "-c", py});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
}

INSTANTIATE_TEST_SUITE_P(As, NestedTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
