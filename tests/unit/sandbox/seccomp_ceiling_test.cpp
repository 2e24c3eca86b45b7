// seccomp's ceiling: a syscall number above the highest this build reviewed is ENOSYS and never
// executed; syscalls newer than the build's libseccomp are placed by number.
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "agentbox/sandbox/seccomp.hpp"
#include "child.hpp"
#include "testkit/skip.hpp"

namespace agentbox::sandbox {
namespace {

using testing::ChildResult;
using testing::describe;
using testing::errno_of;
using testing::run_in_child;

constexpr long kFileGetattr = 468;  // Linux 6.17, allowed in the box

// Loads `prog` (errno variant) in the calling child.
int load(const std::vector<sock_filter>& prog) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return errno;
  }
  SeccompProgram p{.notify = prog, .errno_only = prog};
  return load_seccomp(p, -1);
}

// file_getattr(-1, "", NULL, 0, 0): the kernel answers EINVAL or EBADF; never ENOSYS if it ran.
int file_getattr_errno() {
  return errno_of(syscall(kFileGetattr, -1, "", nullptr, 0, 0));
}

// The oracle that a number above the ceiling is not executed: a call this kernel implements,
// with the ceiling lowered below it, answers ENOSYS; with the build's ceiling, the kernel's own
// answer.
TEST(SeccompCeiling, NumberAboveTheCeilingIsNotExecuted) {
  ChildResult control = run_in_child([] { return file_getattr_errno(); });
  ASSERT_TRUE(control.exited) << describe(control);
  if (control.code == ENOSYS) {
    testkit::skip(testkit::Need::feature("FILE_GETATTR", "file_getattr (Linux 6.17)"),
                  "this kernel has no file_getattr, the oracle call");
    return;
  }
  auto lowered = compile_seccomp_with({}, false, SeccompLayout::kTree, kFileGetattr - 1);
  ASSERT_TRUE(lowered) << lowered.error().message();
  ChildResult below = run_in_child([&] {
    int e = load(*lowered);
    return e != 0 ? 100 + e : file_getattr_errno();
  });
  EXPECT_TRUE(below.exited && below.code == ENOSYS) << describe(below);
  auto built = compile_seccomp({});
  ASSERT_TRUE(built) << built.error().message();
  ChildResult at = run_in_child([&] {
    int e = load(built->errno_only);
    return e != 0 ? 100 + e : file_getattr_errno();
  });
  EXPECT_TRUE(at.exited && at.code == control.code) << describe(at);
}

// Every number from the ceiling up to 1023, and a spread up to the x32 bit, is ENOSYS in the box
// (the kernel's answer for an unimplemented number is ENOSYS too; the test above is the oracle
// that the filter, not the kernel, gives it).
TEST(SeccompCeiling, EveryNumberAboveTheCeilingIsEnosys) {
  auto built = compile_seccomp({});
  ASSERT_TRUE(built) << built.error().message();
  ChildResult r = run_in_child([&] {
    if (load(built->errno_only) != 0) {
      return 200;
    }
    for (long nr = kSyscallCeiling + 1; nr < 0x40000000; nr = nr < 1024 ? nr + 1 : nr * 3 + 1) {
      if (syscall(nr, 0, 0, 0, 0, 0, 0) != -1 || errno != ENOSYS) {
        return nr < 1024 ? static_cast<int>(nr - kSyscallCeiling) : 199;  // which one, roughly
      }
    }
    return 0;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r) << " (exit code: offset above the ceiling)";
}

}  // namespace
}  // namespace agentbox::sandbox
