// The exec guard: every execve/execveat of the box, held by seccomp user notification, read,
// checked against the exec rules, audited, and answered.
//
// Theory of operation (supervisor, event-loop thread; the caller is blocked in the kernel):
//   1. DenialMonitor hands over each native execve/execveat notification (on_exec).
//   2. read_exec_call(): the path and argv with process_vm_readv (argv's pointers and the first
//      bytes of their strings in one read each, the rest page by page), bounded (kMaxArgs
//      pointers, kMaxBytes of strings; a longer argv is `truncated`); the path resolved in the
//      box's view (relative to the caller's cwd or execveat's dirfd, then every symlink and `..`
//      followed with openat2(RESOLVE_IN_ROOT) under /proc/PID/root) so every spelling of a
//      program names the same file.
//   3. The caller must still be the one that stopped (its pid not recycled while we read): a
//      successful SECCOMP_IOCTL_NOTIF_SEND proves it (it was held until the answer), so allow
//      and deny audit only after a successful answer; `ask` checks SECCOMP_IOCTL_NOTIF_ID_VALID
//      before it asks.
//   4. No exec rules (exec logging only): the caller is continued as soon as path, argv, cwd and
//      an fd of its root are copied, and the path is resolved under that fd and the line emitted
//      after it runs on. With rules, policy::ExecPolicy::decide(): allow ->
//      SECCOMP_USER_NOTIF_FLAG_CONTINUE; deny -> EACCES;
//      ask -> policy::Approver::ask() and the notification simply stays unanswered (the caller
//      stays blocked, the rest of the box runs) until the callback, which answers it; no
//      approver -> deny ("no approver"). With rules, a read that fails is a deny. A person's
//      deny (or the wait's end) is remembered for the same program and argv for 10 s: a shell's
//      PATH search retries the next directory after EACCES, and is denied without a new question.
//   5. One `exec` audit event per exec (exec logging) and per decision a rule made.
// Limits (docs/CONFINEMENT.md): the kernel reads the caller's memory again when it executes, so
// another thread of the caller can change the arguments between the check and the exec; a
// symlink in the path can be switched likewise. This is a guard against a confused agent, not
// against a hostile one. A script fed to an interpreter (`sh x.sh`, `python -c`) is one exec of
// the interpreter: what the script runs without exec is not seen.
// If the supervisor is gone, the kernel fails every notified call with ENOSYS (no listener:
// seccomp_do_user_notification), and init's PR_SET_PDEATHSIG ends the box anyway.
#pragma once

#include <linux/seccomp.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/policy/approval.hpp"
#include "agentbox/policy/exec_rule.hpp"
#include "agentbox/sandbox/seccomp.hpp"

namespace agentbox::sandbox {

struct ExecGuardSpec {
  policy::ExecPolicy policy;
  bool log = true;                       // an `exec` audit event for every exec
  policy::Approver* approver = nullptr;  // for `ask`; nullptr: ask is a deny ("no approver")
};

struct ExecStats {
  uint64_t execs = 0;
  uint64_t denied = 0;
  uint64_t asked = 0;
};

class ExecGuard final : public ExecHandler {
 public:
  static constexpr size_t kMaxArgs = 4096;
  static constexpr size_t kMaxBytes = 128 * 1024;  // all argument strings together
  static constexpr size_t kAuditBytes = 8 * 1024;  // argv bytes an audit event carries

  ExecGuard(ExecGuardSpec spec, audit::Sink& sink);
  ~ExecGuard() override;
  ExecGuard(const ExecGuard&) = delete;
  ExecGuard& operator=(const ExecGuard&) = delete;

  void on_exec(int listener, const seccomp_notif& req) noexcept override;
  [[nodiscard]] ExecStats stats() const;
  // The approver for `ask` from the next exec on (the session's queue starts after the box;
  // nullptr again as it ends). Questions already asked keep their callbacks.
  void use_approver(policy::Approver* approver) noexcept;

 private:
  void log_after_continuing(int listener, const seccomp_notif& req);

  struct State;
  std::shared_ptr<State> state_;  // pending approvals hold it weakly
};

// The exec's path and argv as the caller passed them (bounded), its cwd and resolved path.
[[nodiscard]] base::Result<policy::ExecCall> read_exec_call(pid_t pid, const seccomp_data& data);

}  // namespace agentbox::sandbox
