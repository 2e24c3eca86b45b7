// Capabilities: drop everything (bounding, ambient, effective/permitted/inheritable), lock it.
#include "agentbox/sandbox/caps.hpp"

#include <linux/securebits.h>
#include <sys/prctl.h>

#include <cerrno>
#include <utility>

namespace agentbox::sandbox {

base::Result<CapDrop> CapDrop::prepare() {
  cap_t empty = cap_init();  // all three sets clear
  if (empty == nullptr) {
    return base::Error::sys(errno, "cap_init");
  }
  // cap_max_bits(): what the running kernel knows (libcap probes it), at least what we compiled.
  int max_bits = static_cast<int>(cap_max_bits());
  if (max_bits < CAP_LAST_CAP + 1) {
    max_bits = CAP_LAST_CAP + 1;
  }
  return CapDrop(empty, max_bits);
}

CapDrop::CapDrop(CapDrop&& other) noexcept
    : empty_(std::exchange(other.empty_, nullptr)), max_bits_(other.max_bits_) {}

CapDrop& CapDrop::operator=(CapDrop&& other) noexcept {
  if (this != &other) {
    if (empty_ != nullptr) {
      cap_free(empty_);
    }
    empty_ = std::exchange(other.empty_, nullptr);
    max_bits_ = other.max_bits_;
  }
  return *this;
}

CapDrop::~CapDrop() {
  if (empty_ != nullptr) {
    cap_free(empty_);
  }
}

int CapDrop::apply() const noexcept {
  // Securebits first: changing them needs CAP_SETPCAP, which the next steps remove.
  constexpr unsigned long kBits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                  SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, kBits, 0, 0, 0) != 0) {
    return errno;
  }
  for (int cap = 0; cap < max_bits_; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL && cap > CAP_LAST_CAP) {
        break;  // libcap knows more caps than this kernel
      }
      return errno;
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return errno;  // EINVAL: kernel < 4.3 has no ambient set
  }
  if (cap_set_proc(empty_) != 0) {
    return errno;
  }
  return 0;
}

}  // namespace agentbox::sandbox
