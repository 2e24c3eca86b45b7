// The one skip helper of every test suite (unit, integration, attacks): a test that cannot run
// here says why, visibly, and fails where the machine declared it must run.
//
// What decides, in order (docs/ARCHITECTURE.md, "What CI requires of its machine"):
//   skip(why)        something every test machine should have is missing (root, user
//                    namespaces, /dev/net/tun, a tool scripts/install-deps installs): a failure
//                    when AGENTBOX_MUST_WORK is exactly "1" (CI), a visible skip otherwise.
//   skip(need, why)  a kernel facility whose level differs between machines (the Landlock ABI,
//                    the cgroup mode) or a build variant that cannot run the test: a failure
//                    when the machine declared it provides `need` (AGENTBOX_REQUIRE_LANDLOCK_ABI,
//                    AGENTBOX_REQUIRE_CGROUP), otherwise reported as not applicable here.
// Each call prints "skipped: ..." (or "not applicable: ...") in the test's output and appends
// one line to $AGENTBOX_SKIP_LOG, which ./scripts/test prints at the end of its report.
// Call from SetUp() or the test body, then return: like GTEST_SKIP, it only records the verdict.
#pragma once

#include <string>
#include <string_view>

namespace agentbox::testkit {

// AGENTBOX_MUST_WORK is exactly "1" ("0", another value or unset: off).
[[nodiscard]] bool must_work();

// A facility at a level a machine may or may not provide.
class Need {
 public:
  // The kernel's Landlock ABI is at least `abi` (1: Landlock is enabled at all).
  static Need landlock_abi(int abi);
  // A session cgroup of that mode can be made (v1: root's v1 memory/pids hierarchies; v2: a
  // delegated unified hierarchy).
  static Need cgroup_v1();
  static Need cgroup_v2();
  // A build without AddressSanitizer (never declared: a sanitizer build cannot run the test).
  static Need build_without_asan();
  // Any other facility a machine may lack, declared by AGENTBOX_REQUIRE_<NAME>=1; e.g.
  // feature("IA32", "the i386 syscall ABI (int 0x80)").
  static Need feature(std::string name, std::string what);

  // The machine declared that it provides this (a skip is then a failure).
  [[nodiscard]] bool declared() const;
  [[nodiscard]] std::string describe() const;

 private:
  enum class Kind { kLandlockAbi, kCgroupV1, kCgroupV2, kBuild, kFeature };
  Need(Kind kind, int level) : kind_(kind), level_(level) {}
  Kind kind_;
  int level_;
  std::string name_;  // kFeature: NAME of AGENTBOX_REQUIRE_NAME, and what it is
  std::string what_;
};

void skip(std::string_view why);
void skip(const Need& need, std::string_view why);

// The kernel's Landlock ABI version (0 when Landlock is not enabled).
[[nodiscard]] int landlock_abi();
// AGENTBOX_REQUIRE_LANDLOCK_ABI (0 when unset; junk is a test failure).
[[nodiscard]] int declared_landlock_abi();

}  // namespace agentbox::testkit
