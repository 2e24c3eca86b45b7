// The session-wide budget for the kernel socket memory the supervisor's flows may hold.
//
// Every flow gets a grant when its SYN is allowed, released when the flow ends: the socket
// buffers made for it (a proxied flow has four: both ends of the proxy's socketpair, the upstream
// socket's send and receive buffers) are sized from the grant, and the grants of all open flows
// never exceed the budget. Each flow is sure of a floor (the kernel's smallest buffers, reserved
// for every flow up to max_flows); the rest of the budget is a pool from which a new flow draws a
// quarter of what is free. A session with a few busy flows gets large buffers (throughput); a box
// that opens thousands of flows into an upstream that stops reading gets small ones, and the total
// the kernel holds for it stays within the budget (docs/NETWORK.md, "Memory").
#pragma once

#include <cstdint>
#include <unordered_map>

#include "agentbox/net/flow.hpp"

namespace agentbox::net {

class BufferBudget {
 public:
  // The smallest grant: what the kernel makes of the smallest SO_SNDBUF / SO_RCVBUF (4,608 and
  // 2,304 bytes) for the four buffers of a proxied flow, plus one queued segment of slack.
  static constexpr uint64_t kFloor = uint64_t{24} << 10;
  // A socketpair end is never given more than AF_UNIX's default (net.core.wmem_default).
  static constexpr uint64_t kMaxPair = 212'992;

  // `total` 0: no budget (every grant is the kernel's default). Otherwise total must be at least
  // max_flows * kFloor (checked by the config; clamped here).
  BufferBudget(uint64_t total, uint64_t max_flows);
  // The grant for flow `id` (charged until release(id)).
  [[nodiscard]] BufferGrant acquire(uint64_t id);
  void release(uint64_t id);
  [[nodiscard]] uint64_t granted() const { return granted_; }
  [[nodiscard]] uint64_t total() const { return total_; }

 private:
  uint64_t total_;
  uint64_t max_flows_;
  uint64_t autotune_;      // tcp_wmem[2] + tcp_rmem[2]: beyond this, the kernel's own limit holds
  uint64_t explicit_max_;  // the largest buffer setsockopt makes (2 x net.core.[wr]mem_max)
  uint64_t granted_ = 0;
  std::unordered_map<uint64_t, uint64_t> grants_;
};

// Applies a grant's upstream size to a TCP socket before connect(2) (SO_SNDBUF and SO_RCVBUF,
// which also fixes the window scale the SYN offers). Nothing when `bytes` is 0.
void cap_socket_buffers(int fd, uint64_t bytes);
// Applies a send buffer size to a socketpair end. Nothing when `bytes` is 0.
void cap_send_buffer(int fd, uint64_t bytes);

}  // namespace agentbox::net
