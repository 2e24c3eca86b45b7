// The session-wide socket buffer budget (theory in buffer_budget.hpp).
#include "agentbox/net/buffer_budget.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <fstream>

namespace agentbox::net {

namespace {

// The third field of net.ipv4.tcp_wmem / tcp_rmem: how far autotuning grows a buffer.
uint64_t autotune_max(const char* path, uint64_t fallback) {
  std::ifstream in(path);
  uint64_t lo = 0;
  uint64_t mid = 0;
  uint64_t hi = 0;
  if (in >> lo >> mid >> hi) {
    return hi;
  }
  return fallback;
}

// net.core.wmem_max / rmem_max: what setsockopt caps SO_SNDBUF / SO_RCVBUF at (before doubling).
uint64_t sysctl_value(const char* path, uint64_t fallback) {
  std::ifstream in(path);
  uint64_t v = 0;
  return (in >> v) ? v : fallback;
}

void set_int(int fd, int opt, uint64_t bytes) {
  // setsockopt doubles the value (bookkeeping overhead) and caps it at net.core.[wr]mem_max.
  int v = static_cast<int>(std::min<uint64_t>(bytes / 2, INT32_MAX));
  (void)::setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);
}

}  // namespace

BufferBudget::BufferBudget(uint64_t total, uint64_t max_flows)
    : total_(total == 0 ? 0 : std::max(total, max_flows * kFloor)),
      max_flows_(max_flows),
      autotune_(autotune_max("/proc/sys/net/ipv4/tcp_wmem", uint64_t{4} << 20) +
                autotune_max("/proc/sys/net/ipv4/tcp_rmem", uint64_t{6} << 20)),
      explicit_max_(2 * std::min(sysctl_value("/proc/sys/net/core/wmem_max", 212'992),
                                 sysctl_value("/proc/sys/net/core/rmem_max", 212'992))) {}

BufferGrant BufferBudget::acquire(uint64_t id) {
  if (total_ == 0) {
    return {};
  }
  // Every flow that may still open keeps its floor; a new flow takes its floor plus a quarter of
  // the pool that is left.
  const uint64_t open = grants_.size();
  const uint64_t reserved = (max_flows_ > open ? max_flows_ - open : 0) * kFloor;
  const uint64_t free_now = total_ > granted_ ? total_ - granted_ : 0;
  const uint64_t pool = free_now > reserved ? free_now - reserved : 0;
  const uint64_t offer = kFloor + pool / 4;
  BufferGrant g{.pair = std::clamp<uint64_t>(offer / 4, 4608, kMaxPair)};
  const uint64_t rest = offer > 2 * g.pair ? offer - 2 * g.pair : 0;
  if (rest >= autotune_) {
    // Enough for all autotuning can reach: leave it on (the kernel's tcp_wmem/tcp_rmem hold).
    g.upstream = 0;
    g.total = 2 * g.pair + autotune_;
  } else {
    // Fixed; setsockopt cannot go past net.core.wmem_max/rmem_max, so no more is charged.
    g.upstream = std::clamp<uint64_t>(rest / 2, 4608, std::max<uint64_t>(explicit_max_, 4608));
    g.total = 2 * g.pair + 2 * g.upstream;
  }
  g.total = std::max(g.total, kFloor);
  grants_[id] = g.total;
  granted_ += g.total;
  return g;
}

void BufferBudget::release(uint64_t id) {
  auto it = grants_.find(id);
  if (it == grants_.end()) {
    return;
  }
  granted_ -= it->second;
  grants_.erase(it);
}

void cap_socket_buffers(int fd, uint64_t bytes) {
  if (bytes == 0) {
    return;
  }
  set_int(fd, SO_SNDBUF, bytes);
  set_int(fd, SO_RCVBUF, bytes);
}

void cap_send_buffer(int fd, uint64_t bytes) {
  if (bytes != 0) {
    set_int(fd, SO_SNDBUF, bytes);
  }
}

}  // namespace agentbox::net
