// seccomp: the syscall filter of the box, compiled in the parent, loaded in the child, and the
// supervisor side that answers (and audits) each denied call.
//
// Theory of operation:
//   1. compile_seccomp() (parent) builds the filter with libseccomp, default ALLOW and explicit
//      denies, and exports it twice as classic BPF: once with every deny as
//      SECCOMP_RET_USER_NOTIF (the supervisor answers EPERM and writes a "seccomp.deny" audit
//      event), once with SECCOMP_RET_ERRNO(EPERM) (no supervisor, or nested under a filter that
//      already has a listener). clone3 is always ERRNO(ENOSYS) so libc falls back to clone(2),
//      whose flags the filter can read. Foreign ABIs (i386 via int 0x80, x32) kill the process.
//      A prologue in front of libseccomp's program answers ENOSYS for every native number above
//      kSyscallCeiling (syscalls newer than this build), so unknown never means allowed.
//   2. load_seccomp() (child, last step before execve, no allocation) installs the notify
//      program with SECCOMP_FILTER_FLAG_NEW_LISTENER, sends the listener fd to the supervisor over
//      a unix socket (SCM_RIGHTS) and closes its copy.
//   3. DenialMonitor (supervisor, event loop) owns the listener: fd() goes into epoll,
//      on_readable() answers every pending notification. If the supervisor is gone the kernel
//      fails the notified calls with ENOSYS: the box never hangs on a dead listener.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

struct seccomp_notif;
struct seccomp_notif_resp;

namespace agentbox::sandbox {

// Groups of denied syscalls a profile may loosen by name ([seccomp] allow = ["ptrace"]):
//   "ptrace" : ptrace, process_vm_readv/writev, process_madvise, pidfd_getfd, kcmp (debuggers,
//              strace, rr). Still limited by the PID namespace: nothing outside the box is visible.
//   "perf"   : perf_event_open (profilers); kernel.perf_event_paranoid still applies.
//   "userns" : new namespaces (unshare/clone CLONE_NEW*, setns) and the mount family inside them,
//              for nested sandboxes (bwrap, chromium, podman). Widens kernel attack surface;
//              the box then keeps no Landlock filesystem rules (confine.cpp, LandlockFs).
[[nodiscard]] const std::vector<std::string>& known_seccomp_groups();
// The group whose allowing would admit a call of `syscall` (a name as the seccomp.deny audit line
// gives it), or empty: not in any group, agentbox never allows it.
[[nodiscard]] std::string_view seccomp_group_of(std::string_view syscall);

struct SeccompProgram {
  std::vector<sock_filter> notify;      // denies answered by the supervisor
  std::vector<sock_filter> errno_only;  // denies answered by the kernel with EPERM
  // with_exec_notify(): execve/execveat are notified too (exec rules or exec logging). Then an
  // enclosing listener (EBUSY) is fatal when `exec_required` (rules that cannot be enforced),
  // and falls back to errno_only (no exec log) otherwise.
  bool exec_required = false;
};

// Puts a prologue in front of `prog`: native execve and execveat return USER_NOTIF (the exec
// guard answers), except an execve whose unused sixth argument is `cookie`: the launcher's own
// first exec of the command, which happens while the supervisor still waits for the box to start
// and so could not be answered. The cookie is random per session and lives only in the filter
// and in init's memory (not dumpable, owned by the host's user namespace): no process of the box
// can read it. errno_only is left as it was (no exec notification there).
[[nodiscard]] std::vector<sock_filter> with_exec_notify(std::vector<sock_filter> prog,
                                                        uint64_t cookie);

// Unknown group names are an error (config validates with known_seccomp_groups()).
[[nodiscard]] base::Status check_seccomp_groups(const std::set<std::string>& allow_groups);
// The notify program comes from the table compiled into agentbox at build time
// (prebuilt_seccomp), else from libseccomp now; errno_only is notify_to_errno() of it.
[[nodiscard]] base::Result<SeccompProgram> compile_seccomp(
    const std::set<std::string>& allow_groups);
// The build-time program for these groups, or nullptr (the build could not compile one).
[[nodiscard]] const std::vector<sock_filter>* prebuilt_seccomp(
    const std::set<std::string>& allow_groups);
// How libseccomp lays out the syscall-number dispatch. The kernel's action cache (Linux 5.11+)
// already skips the filter for every syscall whose verdict does not depend on its arguments
// (read, openat, newfstatat, ... : all but ioctl, socket, socketpair, clone, personality and
// unshare here), so the layout only matters for those six: a sorted binary tree
// (SCMP_FLTATR_CTL_OPTIMIZE=2) reaches them in ~8 comparisons instead of a ~65-long chain
// (bench/seccomp_bench: ioctl and clone rows).
enum class SeccompLayout : uint8_t { kTree, kLinear };
// The highest syscall number this build has reviewed (file_setattr, Linux 6.17; the same number
// on x86_64 and aarch64). Every number above it is ERRNO(ENOSYS) before any rule: libseccomp's
// default action (allow) never reaches a syscall added by a later kernel.
inline constexpr uint32_t kSyscallCeiling = 469;
// One program straight from libseccomp, with every deny as USER_NOTIF (notify) or ERRNO(EPERM),
// behind the ceiling prologue. compile_seccomp() uses the first; tests compare notify_to_errno()
// against the second, and lower `ceiling` to show a number above it is never executed.
[[nodiscard]] base::Result<std::vector<sock_filter>> compile_seccomp_with(
    const std::set<std::string>& allow_groups, bool notify,
    SeccompLayout layout = SeccompLayout::kTree, uint32_t ceiling = kSyscallCeiling);
// Every `return SECCOMP_RET_USER_NOTIF` of `prog` becomes `return SECCOMP_RET_ERRNO | EPERM`.
[[nodiscard]] std::vector<sock_filter> notify_to_errno(std::vector<sock_filter> prog);

enum class SeccompMode : uint8_t { kNotified, kErrnoOnly };

// Child side, async-signal-safe. With notify_socket >= 0: load the notify program, send the
// listener over notify_socket and close it; if the kernel refuses a second listener (EBUSY: an
// outer sandbox already has one) fall back to the errno program. With notify_socket < 0: the errno
// program. Returns 0 or an errno; `mode` (optional) says which program is active.
[[nodiscard]] int load_seccomp(const SeccompProgram& program, int notify_socket,
                               SeccompMode* mode = nullptr) noexcept;

// Handles execve/execveat notifications (sandbox/exec_guard.hpp). It answers `req` on
// `listener` now or later (SECCOMP_IOCTL_NOTIF_SEND), never blocking the loop.
class ExecHandler {
 public:
  virtual ~ExecHandler() = default;
  virtual void on_exec(int listener, const seccomp_notif& req) noexcept = 0;
};

// Sends/receives one fd over a unix socket (SCM_RIGHTS). send_fd is async-signal-safe.
[[nodiscard]] int send_fd(int sock, int fd) noexcept;
[[nodiscard]] base::Result<base::UniqueFd> receive_fd(int sock);

// Supervisor side of SECCOMP_RET_USER_NOTIF. Every notification is answered with EPERM and
// audited as {"type":"seccomp.deny","syscall":..,"nr":..,"pid":..,"exe":..,"arg0":..}. Events per
// syscall are capped (the first kAuditBurst, then every 1024th with a "count") so a box looping on
// a denied call cannot flood the log; the counters stay exact.
class DenialMonitor {
 public:
  static constexpr uint64_t kAuditBurst = 50;

  [[nodiscard]] static base::Result<DenialMonitor> create(base::UniqueFd listener,
                                                          audit::Sink& sink);
  DenialMonitor(DenialMonitor&& other) noexcept;
  DenialMonitor& operator=(DenialMonitor&&) = delete;
  DenialMonitor(const DenialMonitor&) = delete;
  ~DenialMonitor();

  [[nodiscard]] int fd() const { return listener_.get(); }
  // Native execve/execveat notifications go to `h` (not owned; nullptr: denied as any other).
  void set_exec_handler(ExecHandler* h) { exec_ = h; }
  // Answers every pending notification (bounded per call). Returns false once the listener is
  // dead (every filtered task has exited): the loop should remove fd() then.
  bool on_readable() noexcept;
  [[nodiscard]] uint64_t denied() const { return denied_; }
  // Denials per syscall name, for the session summary.
  [[nodiscard]] const std::map<std::string, uint64_t>& by_syscall() const { return by_name_; }

 private:
  DenialMonitor(base::UniqueFd listener, audit::Sink& sink, seccomp_notif* req,
                seccomp_notif_resp* resp);
  void handle_one() noexcept;
  base::UniqueFd listener_;
  audit::Sink* sink_;
  ExecHandler* exec_ = nullptr;
  seccomp_notif* req_ = nullptr;
  seccomp_notif_resp* resp_ = nullptr;
  uint64_t denied_ = 0;
  std::map<std::string, uint64_t> by_name_;
};

}  // namespace agentbox::sandbox
