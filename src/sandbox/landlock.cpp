// Landlock: ABI probe, rule planning in the parent, enforcement in the child (raw syscalls).
#include "agentbox/sandbox/landlock.hpp"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace agentbox::sandbox {
namespace {

// Debian 12's linux-libc-dev (6.1) stops at ABI 2: the later constants, from the kernel's uapi.
constexpr uint64_t kFsExecute = 1ULL << 0;
constexpr uint64_t kFsWriteFile = 1ULL << 1;
constexpr uint64_t kFsReadFile = 1ULL << 2;
constexpr uint64_t kFsReadDir = 1ULL << 3;
constexpr uint64_t kFsRefer = 1ULL << 13;     // ABI 2
constexpr uint64_t kFsTruncate = 1ULL << 14;  // ABI 3
constexpr uint64_t kFsIoctlDev = 1ULL << 15;  // ABI 5
constexpr uint64_t kAbi1Fs = (1ULL << 13) - 1;
constexpr uint64_t kScopeAbstractUnix = 1ULL << 0;  // ABI 6
constexpr uint64_t kScopeSignal = 1ULL << 1;        // ABI 6
// Rights that make sense on a non-directory (the kernel rejects the others with EINVAL).
constexpr uint64_t kFileRights =
    kFsExecute | kFsWriteFile | kFsReadFile | kFsTruncate | kFsIoctlDev;
constexpr uint64_t kReadRights = kFsExecute | kFsReadFile | kFsReadDir;
constexpr int kRuleTypePathBeneath = 1;  // LANDLOCK_RULE_PATH_BENEATH

// uapi struct landlock_ruleset_attr as of ABI 6; older kernels get a prefix of it.
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};
// uapi struct landlock_path_beneath_attr is packed: 8 + 4 bytes.
struct __attribute__((packed)) PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};
static_assert(sizeof(PathBeneathAttr) == 12);

uint64_t fs_rights_for(int abi) {
  uint64_t r = kAbi1Fs;
  if (abi >= 2) {
    r |= kFsRefer;
  }
  if (abi >= 3) {
    r |= kFsTruncate;
  }
  if (abi >= 5) {
    r |= kFsIoctlDev;
  }
  return r;
}

}  // namespace

int landlock_abi() {
  static const int abi = [] {
    long v = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : static_cast<int>(v);
  }();
  return abi;
}

LandlockPlan::LandlockPlan(const LandlockPlan& other)
    : abi(other.abi), handled_fs(other.handled_fs), scoped(other.scoped), paths(other.paths) {
  rules.reserve(other.rules.size());
  for (size_t i = 0; i < other.rules.size(); ++i) {
    rules.push_back({paths[i].c_str(), other.rules[i].access});
  }
}

LandlockPlan& LandlockPlan::operator=(const LandlockPlan& other) {
  if (this != &other) {
    LandlockPlan copy(other);
    *this = std::move(copy);
  }
  return *this;
}

base::Result<LandlockPlan> plan_landlock(const std::vector<std::string>& ro,
                                         const std::vector<std::string>& rw, int abi_cap,
                                         LandlockFs fs) {
  LandlockPlan plan;
  plan.abi = landlock_abi();
  if (abi_cap > 0 && abi_cap < plan.abi) {
    plan.abi = abi_cap;
  }
  if (plan.abi >= 6) {
    // Signals only within the domain (the box cannot signal the supervisor or init); abstract
    // unix sockets only within it (the network namespace already separates them from the host).
    plan.scoped = kScopeSignal | kScopeAbstractUnix;
  }
  if (fs == LandlockFs::kScopesOnly) {
    // A domain that handles no filesystem right does not trip Landlock's mount hooks; one with
    // nothing at all to enforce is not created (the kernel refuses an empty ruleset).
    plan.abi = plan.scoped != 0 ? plan.abi : 0;
    return plan;
  }
  if (plan.abi == 0) {
    return plan;
  }
  plan.handled_fs = fs_rights_for(plan.abi);
  // paths first, then rules pointing into them (no reallocation after this point).
  plan.paths.reserve(ro.size() + rw.size());
  for (const auto* list : {&ro, &rw}) {
    for (const auto& p : *list) {
      if (p.empty() || p[0] != '/') {
        return base::Error::msg("Landlock grant `" + p + "` is not an absolute path");
      }
      plan.paths.push_back(p);
    }
  }
  for (size_t i = 0; i < plan.paths.size(); ++i) {
    uint64_t access = i < ro.size() ? kReadRights : plan.handled_fs;
    plan.rules.push_back({plan.paths[i].c_str(), access & plan.handled_fs});
  }
  return plan;
}

int apply_landlock(const LandlockPlan& plan) noexcept {
  if (plan.abi == 0) {
    return 0;
  }
  RulesetAttr attr{
      .handled_access_fs = plan.handled_fs, .handled_access_net = 0, .scoped = plan.scoped};
  // Pass only the prefix this ABI knows: net from ABI 4, scoped from ABI 6.
  size_t size = plan.abi >= 6 ? sizeof(RulesetAttr) : plan.abi >= 4 ? 16 : 8;
  int ruleset = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, size, 0));
  if (ruleset < 0) {
    return errno;
  }
  for (const auto& rule : plan.rules) {
    int fd = open(rule.path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        continue;  // not in this box's view: nothing to grant
      }
      int err = errno;
      close(ruleset);
      return err;
    }
    struct stat st {};
    uint64_t access = rule.access;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) {
      access &= kFileRights;
    }
    PathBeneathAttr pb{.allowed_access = access, .parent_fd = fd};
    long rc = syscall(SYS_landlock_add_rule, ruleset, kRuleTypePathBeneath, &pb, 0);
    int err = errno;
    close(fd);
    if (rc != 0) {
      close(ruleset);
      return err;
    }
  }
  long rc = syscall(SYS_landlock_restrict_self, ruleset, 0);
  int err = errno;
  close(ruleset);
  return rc == 0 ? 0 : err;
}

}  // namespace agentbox::sandbox
