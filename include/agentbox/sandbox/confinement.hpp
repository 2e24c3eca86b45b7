// The confinement hook: what the program's process applies to itself right before execve.
//
// Landlock, capability dropping, no_new_privs, seccomp and rlimits live in their own files and
// are applied through this one interface, so the launcher stays ignorant of them. The object is
// prepared completely in the supervisor before clone (rulesets built, BPF compiled); apply() runs
// in the program's process, after fds 3+ were marked close-on-exec and before execve. That
// process is started like posix_spawn's child (CLONE_VM|CLONE_VFORK: it shares init's memory
// until execve, init waiting), so: async-signal-safe system calls only, no allocation, no locks,
// no writes to shared state. Any fd it opens must be O_CLOEXEC (landlock rulesets and seccomp
// listeners are).
//
// sandbox/confine.hpp (PreparedConfinement + apply()) plugs in through a small adapter whose
// apply() calls sandbox::apply(prepared, notify_fd) and maps its ChildFailure stages onto
// SetupStage: kLimits -> kRlimits, kNoNewPrivs -> kNoNewPrivs, kLandlock -> kLandlock,
// kProtect -> kProtectCheck, kCaps -> kCapabilities, kSeccomp -> kSeccomp. (The launcher's enum
// is SetupStage so that it never collides with confine.hpp's own Stage.)
#pragma once

#include <cstdint>

namespace agentbox::sandbox {

// Where setting up the box failed; reported with an errno from the child to the supervisor.
// Values are stable only within one build (the supervisor and the child are the same binary).
enum class SetupStage : uint16_t {
  kNone = 0,
  kParentGone,
  kPdeathsig,
  kSetgroups,
  kUidMap,
  kGidMap,
  kMountPrivate,
  kStaging,
  kPivotStaging,
  kMountOp,  // index says which MountOp
  kHostname,
  kLoopback,
  kTunOpen,       // the box's network (BoxNetwork hook): opening /dev/net/tun
  kTapCreate,     // TUNSETIFF
  kTapConfigure,  // netlink: MTU, link up, address, default route
  kTapSend,       // handing the tap fd to the supervisor
  kPivotRoot,
  kChdir,
  kPty,
  kForkProgram,
  kSetsid,
  kControllingTty,
  kCloseFds,
  kLandlock,
  kCapabilities,
  kNoNewPrivs,
  kSeccomp,
  kRlimits,
  kProtectCheck,  // a protected path found writable right before execve
  kConfine,       // any other confinement step
  kExec,
  kNetns,       // init's network thread: unshare(CLONE_NEWNET); init's setns into it
  kUserLimits,  // writing the box's user-namespace limits (/proc/sys/user/*)
  kHostPorts,   // the BoxNetwork hook: listening on the box's loopback for --host-port
};

// A short phrase for messages: "writing /proc/self/uid_map", "applying seccomp".
[[nodiscard]] const char* setup_stage_name(SetupStage stage);

struct ConfineResult {
  SetupStage stage = SetupStage::kNone;
  int err = 0;  // 0: success
};

class Confinement {
 public:
  virtual ~Confinement() = default;
  // See the file comment. Returns {kNone, 0} on success.
  [[nodiscard]] virtual ConfineResult apply() const noexcept = 0;
  // Passed as execve's unused sixth argument by the launcher's exec of the command: the seccomp
  // filter lets exactly that exec through without asking the supervisor, which is still waiting
  // for the box to start (seccomp.hpp, with_exec_notify). 0: no exec notification.
  [[nodiscard]] virtual uint64_t exec_cookie() const noexcept { return 0; }
};

}  // namespace agentbox::sandbox
