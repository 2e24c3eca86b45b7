// Capabilities: the box keeps none. Prepared in the parent (libcap objects allocate), dropped in
// the child while it still holds CAP_SETPCAP in its user namespace.
//
// Order (capabilities(7)): lock securebits (needs CAP_SETPCAP) -> drop every bounding-set cap
// (needs CAP_SETPCAP) -> clear ambient -> clear effective/permitted/inheritable. After this no
// execve can give a capability back: root is not special (NOROOT), setuid files give nothing
// (empty bounding set, and no_new_privs), ambient raising is forbidden, and all of it is locked.
#pragma once

#include <sys/capability.h>

#include "agentbox/base/result.hpp"

namespace agentbox::sandbox {

class CapDrop {
 public:
  [[nodiscard]] static base::Result<CapDrop> prepare();
  CapDrop(CapDrop&& other) noexcept;
  CapDrop& operator=(CapDrop&& other) noexcept;
  CapDrop(const CapDrop&) = delete;
  CapDrop& operator=(const CapDrop&) = delete;
  ~CapDrop();

  // Child side, async-signal-safe. Returns 0 or an errno (EPERM: CAP_SETPCAP missing).
  [[nodiscard]] int apply() const noexcept;

 private:
  CapDrop(cap_t empty, int max_bits) : empty_(empty), max_bits_(max_bits) {}
  cap_t empty_ = nullptr;
  int max_bits_ = 0;
};

}  // namespace agentbox::sandbox
