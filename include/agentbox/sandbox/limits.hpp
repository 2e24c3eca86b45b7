// Limits: rlimits applied in the child, and the session cgroup the supervisor manages.
//
// Memory and process counts are enforced by a session cgroup when one can be made (a delegated
// cgroup v2 subtree; or, for root on a legacy/hybrid host, the v1 memory/pids/cpu hierarchies).
// Without one, --memory falls back to RLIMIT_AS (per process, counts address space not memory:
// weaker, and breaks programs that reserve large ranges) and --pids to RLIMIT_NPROC, which since
// Linux 5.14 (rlimits on ucounts) counts the tasks of the uid in the box's user namespace, i.e.
// the box's own tasks, threads and init included (before 5.14: every process of the real uid on
// the machine), and does not bind real root at all (the kernel exempts INIT_USER). RLIMIT_CORE is
// always 0: a core dump would write the box's memory (placeholders, tokens it read) into the
// workspace.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::sandbox {

struct Limits {
  std::optional<uint64_t> address_space;  // RLIMIT_AS, bytes (memory fallback)
  // RLIMIT_DATA, bytes: the built-in memory default's fallback. It counts private writable
  // mappings (what a process can actually fill), not reservations, so JITs and runtimes that
  // reserve large PROT_NONE ranges (V8's cage, wasm guard regions, Go's arenas) keep working.
  std::optional<uint64_t> data;
  std::optional<uint64_t> processes;   // RLIMIT_NPROC (pids fallback; see above)
  std::optional<uint64_t> file_size;   // RLIMIT_FSIZE, bytes (SIGXFSZ, then EFBIG)
  std::optional<uint64_t> open_files;  // RLIMIT_NOFILE
  // The program's nice (raising it needs no privilege), with RLIMIT_NICE 0 so neither it nor its
  // children can lower it again (that would need CAP_SYS_NICE in the initial user namespace).
  std::optional<int> nice;
};

// The nice of a background box (limits.cpu_priority): its processes, its session's autogroup,
// and its cgroup's CPU weight (v1 cpu.shares: kBackgroundWeight, the scheduler's weight for nice
// 10, sched_prio_to_weight; v2 cpu.weight.nice). 10 rather than 19: a group at nice 10 gets a
// tenth of what a group at nice 0 gets when both want the CPU, enough to keep the desktop
// answering, while an agent beside the user's own build still makes progress (at 19 it got
// 1/68th, and `python3 -c 1` in the box took 8-10 s instead of 0.4 s on this loaded VM).
inline constexpr int kBackgroundNice = 10;
inline constexpr int kBackgroundWeight = 110;

// The rlimits for a session: file size and fd limits as asked, memory/pids only as a fallback
// when no cgroup enforces them.
[[nodiscard]] Limits rlimits_for(std::optional<uint64_t> memory_bytes, std::optional<uint64_t> pids,
                                 std::optional<uint64_t> file_size,
                                 std::optional<uint64_t> open_files, bool have_cgroup);

// The name of this session's cgroup: `agentbox-<session id>-p<our pid>` (see create()).
[[nodiscard]] std::string session_cgroup_name(const std::string& session_id);

// Removes the empty `agentbox-*-p<pid>` directories under `parent` whose pid no longer exists.
// Returns how many were removed.
size_t remove_stale_cgroups(const std::string& parent) noexcept;

// Child side, async-signal-safe: writes "0" (the writer itself) to each fd from
// SessionCgroup::open_procs(). Returns 0 or an errno.
[[nodiscard]] int join_cgroup(const int* procs_fds, size_t count) noexcept;

// Child side, async-signal-safe: sets each limit (soft = hard = value, never above the current
// hard limit) and RLIMIT_CORE to 0. Returns 0 or an errno.
[[nodiscard]] int apply_rlimits(const Limits& limits) noexcept;

// Child side, async-signal-safe: limits.nice and RLIMIT_NICE 0 (nothing without limits.nice).
// Called last before the seccomp filter, so the confinement itself does not wait at low priority.
[[nodiscard]] int apply_nice(const Limits& limits) noexcept;

// init side, async-signal-safe: sets the nice of the scheduler autogroup of `pid` (sched(7):
// /proc/PID/autogroup, the weight of a whole session against other sessions) when `pid` leads a
// session of its own, so the group is never that of the session init belongs to (the user's).
// Returns 0 or an errno: EAGAIN while the kernel's rate limit holds (one unprivileged write per
// 100 ms on the whole machine): try again later; ESRCH when `pid` is gone or leads no session;
// ENOENT without CONFIG_SCHED_AUTOGROUP.
[[nodiscard]] int set_autogroup_nice(pid_t pid, int nice) noexcept;

struct CgroupLimits {
  std::optional<uint64_t> memory_bytes;  // memory.max (v1: memory.limit_in_bytes)
  std::optional<uint64_t> pids;          // pids.max
  std::optional<double> cpus;            // cpu.max "quota period" (v1: cfs_quota_us/period_us)
  // The group's CPU weight at kBackgroundNice's (limits.cpu_priority = "background"); else the
  // default.
  bool background = false;
};

// What the kernel counted, read at the end to say which limit the box hit.
struct CgroupEvents {
  uint64_t oom_kills = 0;      // memory.events oom_kill (v1: memory.oom_control oom_kill)
  uint64_t memory_max = 0;     // memory.events max (v1: memory.failcnt)
  uint64_t pids_max = 0;       // pids.events max: forks refused
  uint64_t cpu_throttled = 0;  // cpu.stat nr_throttled: periods the quota of cpu.max ran out
};

enum class CgroupVersion : uint8_t { kV2, kV1 };

struct CgroupOptions {
  bool allow_v2 = true;
  bool allow_v1 = true;  // only works for root; v1 has no safe delegation
  std::string proc_self_cgroup = "/proc/self/cgroup";
  std::string mountinfo = "/proc/self/mountinfo";
};

// A cgroup per session, removed (after killing what is left in it) when destroyed.
class SessionCgroup {
 public:
  // Finds where we may create a child cgroup with the memory and pids controllers, creates
  // `<that>/<name>` and writes the limits. Before that, removes the empty `agentbox-*` cgroups
  // there whose supervisor is gone (a `kill -9`ed supervisor never ran its destructor): names
  // end in `-p<supervisor pid>` (session_cgroup_name), and one is removed only when that
  // process no longer exists; rmdir itself refuses a cgroup that still holds a process. An error
  // says why none is available (the caller falls back to rlimits and says so).
  [[nodiscard]] static base::Result<SessionCgroup> create(const std::string& name,
                                                          const CgroupLimits& limits,
                                                          const CgroupOptions& options = {});
  SessionCgroup(SessionCgroup&& other) noexcept;
  SessionCgroup& operator=(SessionCgroup&&) = delete;
  SessionCgroup(const SessionCgroup&) = delete;
  ~SessionCgroup();

  // Moves `pid` into the session cgroup (its later children follow; earlier ones do not).
  [[nodiscard]] base::Status add(pid_t pid) const;
  // cgroup.procs of each directory, opened O_WRONLY|O_CLOEXEC here, for join_cgroup() in the
  // child: the kernel checks a migration against the opener's credentials and cgroup namespace
  // (Linux >= 5.16), so the agent can move itself in from inside its own namespaces, before
  // execve, with no race against its first fork.
  [[nodiscard]] base::Result<std::vector<base::UniqueFd>> open_procs() const;
  [[nodiscard]] base::Result<CgroupEvents> events() const;
  [[nodiscard]] CgroupVersion version() const { return version_; }
  // cpu.max is written (v2: always, creation fails without the controller; v1: only when a cpu
  // hierarchy is mounted, which is optional).
  [[nodiscard]] bool limits_cpu() const {
    return version_ == CgroupVersion::kV2 || dirs_.size() > 2;
  }
  // The directories (one for v2; one per controller for v1).
  [[nodiscard]] const std::vector<std::string>& dirs() const { return dirs_; }
  // Kills whatever is left and removes the directories (also done by the destructor).
  void destroy() noexcept;

 private:
  SessionCgroup(CgroupVersion v, std::vector<std::string> dirs)
      : version_(v), dirs_(std::move(dirs)) {}
  CgroupVersion version_;
  std::vector<std::string> dirs_;  // v1 order: memory, pids, cpu (cpu may be absent)
};

}  // namespace agentbox::sandbox
