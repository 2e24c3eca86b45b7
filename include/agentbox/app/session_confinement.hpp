// The session's kernel-enforced confinement, seen from app: builds the ConfinementSpec from the
// policy, is the launcher's Confinement hook, and after the start owns the seccomp listener
// (denials audited from the event loop) and the session cgroup (limits reported at the end).
#pragma once

// Until the launcher (sandbox/confinement.hpp, event/loop.hpp) is on this branch, this glue is
// compiled out; app/run.cpp is its only user.
#if __has_include("agentbox/sandbox/confinement.hpp") && __has_include("agentbox/event/loop.hpp")
#define AGENTBOX_HAVE_LAUNCHER 1

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/config/model.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/sandbox/confine.hpp"
#include "agentbox/sandbox/confinement.hpp"
#include "agentbox/sandbox/exec_guard.hpp"
#include "agentbox/sandbox/limit_watch.hpp"

namespace agentbox::app {

// Benchmark-only switch, read only by the test-only build `agentbox-unconfined` (compiled with
// AGENTBOX_BENCH_UNCONFINED, tests/CMakeLists.txt; the shipped `agentbox` ignores it): with
// AGENTBOX_UNSAFE_BENCH_UNCONFINED=1 in the environment of `agentbox-unconfined run`, seccomp and
// Landlock are not applied (namespaces, mounts, protected paths, capabilities, rlimits and cgroup
// stay), to measure what those two layers cost on real work (bench/confinement.sh) and to test
// the mount layer alone (tests/attacks). Warned about on stderr even with -q and recorded in the
// audit log (sandbox.confine: "unsafe_bench_unconfined": true, seccomp "off", landlock_abi 0).
inline constexpr const char* kUnsafeBenchUnconfinedEnv = "AGENTBOX_UNSAFE_BENCH_UNCONFINED";

struct ConfineInputs {
  std::string session_id;
  std::string workspace;                   // box path = host path
  std::string home;                        // the box's HOME (a tmpfs)
  std::vector<std::string> ro;             // extra read-only grants (box paths)
  std::vector<std::string> rw;             // extra read-write grants
  std::vector<std::string> protected_abs;  // absolute paths of the protected workspace entries
  bool mount_sys = false;
  // Named groups loosened, with where each was asked for: an unknown name is an error that says
  // where it came from (`path:line:col` or the flag).
  std::vector<config::Sourced<std::string>> seccomp_allow;
  config::Limits limits;
  // [exec]: rules and logging (sandbox/exec_guard.hpp). Neither: execve is never held.
  std::vector<policy::ExecRule> exec_rules;
  bool exec_log = false;
  std::vector<std::string> command;      // the command agentbox starts (checked by deny rules)
  policy::Approver* approver = nullptr;  // for `ask` rules; nullptr: ask is a deny
};

class SessionConfinement final : public sandbox::Confinement {
 public:
  [[nodiscard]] static base::Result<std::unique_ptr<SessionConfinement>> create(
      const ConfineInputs& in, audit::Sink& sink);
  ~SessionConfinement() override;

  // In the program's process (launcher hook): sandbox::apply with the notify socket.
  [[nodiscard]] sandbox::ConfineResult apply() const noexcept override;
  [[nodiscard]] uint64_t exec_cookie() const noexcept override { return prepared_.exec_cookie; }
  // The fds apply() uses in the box (notify socket, cgroup.procs): init must keep them open.
  [[nodiscard]] std::vector<int> child_fds() const;
  // For LaunchSpec::exit_report_fd: init reports how the program and orphans died.
  [[nodiscard]] int exit_report_fd() const { return report_write_.get(); }
  // For LaunchSpec::autogroup_nice: limits.cpu_priority's nice for the box's session (-1: none).
  [[nodiscard]] int autogroup_nice() const { return autogroup_nice_; }

  // After Box::start succeeded (`init`: the box's init): takes the seccomp listener, watches it
  // on `loop`, writes the sandbox.confine audit event, starts watching the limits (LimitWatch).
  // A missing listener is not fatal (errno mode), but logged.
  void started(event::Loop& loop, pid_t init);
  // The approver for exec rules' `ask` (the session's queue, set once the control socket
  // listens; nullptr again before it closes). Without one, `ask` is a deny ("no approver").
  void use_approver(policy::Approver* approver);
  // After the box ended: a "limits" audit event (what the cgroup counted, what LimitWatch saw),
  // cgroup removed. Returns a short human phrase per limit reached, joined ("memory limit (OOM
  // kill)"), else "". Never names a limit it has no evidence for (see limit_watch.hpp).
  std::string finished();
  // After finished(): init reported that the program exited by itself (so a status of 128+N is
  // its own exit code, not a signal's).
  [[nodiscard]] bool program_exited() const { return program_exited_; }

 private:
  SessionConfinement(sandbox::PreparedConfinement p, audit::Sink& sink)
      : prepared_(std::move(p)), sink_(&sink) {}
  sandbox::PreparedConfinement prepared_;
  audit::Sink* sink_;
  bool unsafe_unconfined_ = false;  // kUnsafeBenchUnconfinedEnv
  base::UniqueFd notify_parent_;
  base::UniqueFd notify_child_;
  std::optional<sandbox::SessionCgroup> cgroup_;
  std::vector<base::UniqueFd> cgroup_fds_;
  std::optional<sandbox::DenialMonitor> monitor_;
  // Declared after monitor_: destroyed first, while the listener its answers go to is open.
  std::unique_ptr<sandbox::ExecGuard> exec_guard_;
  std::optional<sandbox::ExecGuardSpec> exec_spec_;  // until started()
  event::Loop* loop_ = nullptr;
  event::WatchId watch_ = 0;
  base::UniqueFd report_read_;  // init's ExitReport
  base::UniqueFd report_write_;
  sandbox::LimitWatchSpec watch_spec_;
  sandbox::LimitWatch limit_watch_;
  event::WatchId sample_timer_ = 0;
  std::optional<double> cpus_;  // --cpus, enforced only by a cgroup
  bool cpus_enforced_ = false;  // the session cgroup writes cpu.max
  std::string start_note_;      // SessionLimits::start_note, said in started()
  int autogroup_nice_ = -1;     // SessionLimits::autogroup_nice
  bool program_exited_ = false;
};

}  // namespace agentbox::app

#endif  // AGENTBOX_HAVE_LAUNCHER
