// Landlock: the box's filesystem grants repeated as an unprivileged LSM domain (second layer under
// the mount namespace). Raw syscalls: Debian 12 packages no liblandlock (the maintained library is
// the Rust crate; `apt-cache search landlock` finds nothing), and the three calls are tiny.
//
// Theory of operation: plan_landlock() (parent) queries the kernel's ABI and turns path grants
// into a rule list whose rights the ABI knows (REFER from 2, TRUNCATE from 3, IOCTL_DEV from 5,
// signal and abstract-socket scoping from 6). apply_landlock() (child, after pivot_root, no
// allocation) opens each path O_PATH inside the box's view, skips missing ones, narrows rights to
// the file-only subset for non-directories, adds the rules and restricts itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::sandbox {

// The Landlock ABI the running kernel enforces; 0 if Landlock is unavailable (not built, or not in
// the `lsm=` list). Cached after the first call.
[[nodiscard]] int landlock_abi();

struct LandlockRule {
  const char* path;  // points into LandlockPlan::paths
  uint64_t access;   // LANDLOCK_ACCESS_FS_* bits
};

struct LandlockPlan {
  int abi = 0;              // 0: nothing to enforce (apply is a no-op)
  uint64_t handled_fs = 0;  // every right the ruleset restricts
  uint64_t scoped = 0;      // LANDLOCK_SCOPE_* (ABI >= 6)
  std::vector<std::string> paths;
  std::vector<LandlockRule> rules;

  LandlockPlan() = default;
  LandlockPlan(const LandlockPlan& other);  // re-points rules into the copy's strings
  LandlockPlan& operator=(const LandlockPlan& other);
  LandlockPlan(LandlockPlan&&) noexcept = default;
  LandlockPlan& operator=(LandlockPlan&&) noexcept = default;
};

// Whether the domain handles filesystem rights. Landlock refuses mount, umount, remount,
// move_mount and pivot_root (EPERM) to every process in a domain that handles any filesystem right,
// whatever its rules allow (security/landlock/fs.c, hook_sb_mount and its siblings): no nested
// sandbox (bwrap, unshare -m, Codex's helper) can build a mount tree under such a domain.
// kScopesOnly keeps only the ABI 6 scopes (signals, abstract unix sockets), which do not.
enum class LandlockFs : uint8_t { kRules, kScopesOnly };

// ro: read files, list directories, execute. rw: everything the ABI can restrict.
// abi_cap (tests, doctor) pretends the kernel knows at most that ABI; 0 means "the kernel's".
// Paths must be absolute. With kScopesOnly the paths are ignored.
[[nodiscard]] base::Result<LandlockPlan> plan_landlock(const std::vector<std::string>& ro,
                                                       const std::vector<std::string>& rw,
                                                       int abi_cap = 0,
                                                       LandlockFs fs = LandlockFs::kRules);

// Child side. Needs no_new_privs or CAP_SYS_ADMIN in the current user namespace. Returns 0 or an
// errno (EOPNOTSUPP never: a plan with abi 0 does nothing).
[[nodiscard]] int apply_landlock(const LandlockPlan& plan) noexcept;

}  // namespace agentbox::sandbox
