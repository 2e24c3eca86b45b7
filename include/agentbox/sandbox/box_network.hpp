// The network hook: how init gives the box its one network link, without the sandbox knowing how.
//
// The box's network namespace is new and empty (just `lo`, which the launcher brings up). Its
// only link to the world is a tap device whose other end, the tap fd, is served by the
// supervisor's userspace stack (src/net). Creating and configuring that tap must happen inside
// the namespace, so init does it, through this interface; the implementation lives in net
// (net/tap_setup.hpp) and app wires the two together, so sandbox never depends on net.
//
// setup() runs in init (pid 1 of the box) after the uid/gid maps are written and `lo` is up,
// before pivot_root into the box: the host's root is still reachable at `host_root` (the host's
// /dev/net/tun and /proc/sys are under it). It runs on a second thread of init while the first
// one builds the mount tree (the two are independent; it is joined before the host's tree is
// detached), so it must not touch the mount namespace or the current directory. It returns the
// tap fd (O_CLOEXEC), which the launcher sends to the supervisor over SCM_RIGHTS on the control
// socket and then closes, or a failure that becomes the usual {stage, errno} report. Unlike
// Confinement::apply, setup() may allocate: init is a fork-like clone3 child (no CLONE_VM) of the
// single-threaded supervisor, so no lock can be held by a thread that did not come along, and
// libnl needs the heap.
#pragma once

#include "agentbox/sandbox/confinement.hpp"

namespace agentbox::sandbox {

// Sockets besides the tap that setup() may make in the box's network namespace and hand to the
// supervisor with it (the host services' listeners on the box's loopback; docs/NETWORK.md).
inline constexpr int kMaxNetworkExtraFds = 32;

struct NetworkSetupResult {
  SetupStage stage = SetupStage::kNone;
  int err = 0;  // 0: success, `fd` is the tap
  int fd = -1;
  int extra[kMaxNetworkExtraFds] = {};  // O_CLOEXEC; sent with the tap, then closed in init
  int extra_count = 0;
};

class BoxNetwork {
 public:
  virtual ~BoxNetwork() = default;
  [[nodiscard]] virtual NetworkSetupResult setup(const char* host_root) const noexcept = 0;
};

}  // namespace agentbox::sandbox
