// Confinement: the kernel-enforced layers applied to the agent as the last steps before execve.
//
// Theory of operation (prepare in the parent, apply in the child):
//   prepare()  parent  compiles the seccomp BPF (both variants), plans the Landlock rules for the
//                      running kernel's ABI, allocates the libcap state, copies the rlimits and
//                      the protected paths into C strings. Everything the child needs exists now.
//   apply()    child   after pivot_root, no allocation, async-signal-safe, in this order:
//     1. limits         join the session cgroup (if any), then rlimits (RLIMIT_CORE = 0)
//     2. no_new_privs   (first, so Landlock works without CAP_SYS_ADMIN and nothing later can
//                        regain privilege through execve of a setuid/file-caps binary)
//     3. Landlock       (same grants as the mount view)
//     4. protected      each ro_within_rw path that exists must be on a read-only mount
//     5. caps dropped   (securebits locked, bounding/ambient/effective/permitted/inheritable)
//     6. seccomp        (last: the filter denies calls the steps above make)
//   and reports the first failure as {stage, errno} for the launcher's status pipe.
//
// Protected paths (ro_within_rw): Landlock grants only add up; a read-only hole inside a
// read-write grant cannot be expressed, and granting rw per child of the workspace would forbid
// creating files at its top. So the mount layer makes them read-only (bind mounts, locked in the
// box's user namespace; seccomp denies mount/umount; no capabilities remain), and apply() refuses
// to start the agent if one that exists is not on a read-only mount. Missing protected paths must
// be created (or covered) by the mount layer before this runs; see docs/CONFINEMENT.md.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/sandbox/caps.hpp"
#include "agentbox/sandbox/landlock.hpp"
#include "agentbox/sandbox/limits.hpp"
#include "agentbox/sandbox/seccomp.hpp"

namespace agentbox::sandbox {

// Whether seccomp holds execve/execveat for the exec guard (sandbox/exec_guard.hpp): off (the
// kernel never stops an exec: no cost), log (every exec audited; nested under another listener:
// not logged, said in sandbox.confine), enforce (exec rules; nested: the box does not start).
enum class ExecNotify : uint8_t { kOff, kLog, kEnforce };

struct ConfinementSpec {                  // plain data, no TOML
  std::vector<std::string> ro_paths;      // Landlock read+execute grants (paths inside the box)
  std::vector<std::string> rw_paths;      // Landlock read-write grants
  std::vector<std::string> ro_within_rw;  // protected: read-only though under an rw path
  std::set<std::string> seccomp_allow_groups;  // see known_seccomp_groups()
  Limits limits;                               // rlimits (cgroups are the supervisor's)
  bool landlock = true;                        // false: skip (tests; --no-landlock for debugging)
  bool seccomp = true;
  ExecNotify exec = ExecNotify::kOff;
  bool drop_caps = true;
  int landlock_abi_cap = 0;  // tests: pretend an older Landlock ABI
};

// Grants every box needs besides the workspace: system directories read+exec, device nodes and
// /proc as programs expect them. Paths that do not exist in the box are skipped at apply().
void add_system_grants(ConfinementSpec& spec);

enum class Stage : uint8_t {
  kNone,
  kLimits,
  kNoNewPrivs,
  kLandlock,
  kProtect,
  kCaps,
  kSeccomp,
};
[[nodiscard]] const char* stage_name(Stage stage);

struct ChildFailure {
  Stage stage = Stage::kNone;
  int err = 0;
  explicit operator bool() const { return stage != Stage::kNone; }
};

struct PreparedConfinement {
  ConfinementSpec spec;  // kept for the audit log (grants, groups)
  SeccompProgram seccomp;
  LandlockPlan landlock;
  CapDrop caps;
  std::vector<std::string> protected_paths;
  // The sixth execve argument that lets the launcher's own first exec through unnotified
  // (with_exec_notify); 0 when exec notification is off.
  uint64_t exec_cookie = 0;
  // Borrowed cgroup.procs fds (SessionCgroup::open_procs()); the agent joins them first thing.
  // Set after prepare(), kept open by the supervisor until the box has started.
  std::vector<int> cgroup_procs_fds;
};

[[nodiscard]] base::Result<PreparedConfinement> prepare(const ConfinementSpec& spec);

// Child side. notify_socket >= 0: the seccomp listener is sent there (the supervisor end goes to
// receive_fd() + DenialMonitor); < 0: denials are answered by the kernel (EPERM), unaudited.
[[nodiscard]] ChildFailure apply(const PreparedConfinement& prepared,
                                 int notify_socket = -1) noexcept;

// The audit record of what was enforced: {"type":"sandbox.confine","landlock_abi":N,
// "seccomp":"notify"|"errno","seccomp_allow":[..],"ro":[..],"rw":[..],"protected":[..],
// "caps":"none", and the rlimits set}. `notified`: the supervisor received the listener.
[[nodiscard]] audit::Event confinement_event(const PreparedConfinement& prepared, bool notified);

// The failure as an Error for the supervisor ("confining the agent: <stage>: ...").
[[nodiscard]] base::Error to_error(const ChildFailure& failure);

}  // namespace agentbox::sandbox
