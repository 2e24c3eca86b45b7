// The seams of the network stack: FlowHandler (who serves a box connection), Poller (how fds
// join an event loop) and FrameSink (where frames to the box go).
//
// FlowHandler is where the L7 proxy plugs in. The translator calls on_open once per SYN that
// the egress policy allowed, with everything known about the flow: the name the box resolved
// (or the literal address), the original port, the synthetic destination and the box's source.
// The handler returns a connected-or-connecting stream socket; the translator then moves bytes
// between that socket and the box, with no buffer of its own (passt's design: unacknowledged
// host->box data stays in the socket and is re-read with MSG_PEEK).
//
// Two ways to serve a flow:
//   * connect first: return a non-blocking TCP socket with `connected = false` while connect(2)
//     is in progress; the box gets SYN-ACK when it completes and RST if it fails. (The default
//     ConnectHandler does this.)
//   * accept first: return one end of socketpair(AF_UNIX, SOCK_STREAM) with `connected = true`;
//     the box gets SYN-ACK at once and its first bytes (ClientHello, HTTP request line) appear on
//     the other end, which the handler keeps; it reads them, decides, connects upstream whenever
//     it likes and relays. Unix stream sockets support MSG_PEEK and SO_PEEK_OFF, so the
//     translator works unchanged. The advertised window is the socket's free send space, so a
//     handler that does not read yet applies back-pressure (the box sees a modest, then zero,
//     window) instead of making anyone buffer.
#pragma once

#include <cstdint>
#include <string>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/net/wire.hpp"

namespace agentbox::net {

struct Endpoint {
  Ip4 addr = 0;
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};

// Socket buffer sizes for one flow, in the kernel's units (what getsockopt(SO_SNDBUF) reports:
// setsockopt doubles the value it is given). 0: leave the kernel's default (no budget, or a grant
// at least as large as what the kernel's autotuning can grow to).
struct BufferGrant {
  uint64_t pair = 0;      // each end of the proxy's socketpair (send buffer)
  uint64_t upstream = 0;  // the upstream socket's send and receive buffer, each
  uint64_t total = 0;     // what was charged to the budget
};

struct FlowInfo {
  uint64_t id = 0;         // unique per session, stable for the flow's life
  std::string name;        // allowed host name (from the synthetic address), or the literal
  bool literal = false;    // the box connected to a literal address (a CIDR rule allowed it)
  uint16_t orig_port = 0;  // destination port the box used
  Ip4 synthetic_dst = 0;   // destination address the box used
  Endpoint box_src;        // the box's address and port
  std::string rule;        // the egress rule that allowed the flow (for logs and audit)
  BufferGrant buffers;     // socket buffer sizes from the session's budget (buffer_budget.hpp)
};

struct FlowStats {
  uint64_t bytes_up = 0;    // box -> host, written to the socket
  uint64_t bytes_down = 0;  // host -> box, acknowledged by the box
  bool reset = false;       // ended by RST (either side) rather than FIN/FIN
};

struct OpenResult {
  base::UniqueFd fd;      // SOCK_STREAM, O_NONBLOCK, O_CLOEXEC
  bool connected = true;  // false: non-blocking connect(2) in progress
};

// The translator's side of the seam: a handler that served a flow through a socketpair steps
// out of it (the proxy, once a flow is TLS passthrough or raw TCP) by handing the translator the
// upstream socket, on which the flow then continues as if on_open had returned it.
class FlowControl {
 public:
  virtual ~FlowControl() = default;
  // Continues flow `id` on `fd` (a TCP socket, connected; or still connecting while the box has
  // not been answered yet) in place of the socket on_open returned, which is closed here. The
  // flow's sequence space must not notice: refused unless the old socket holds no byte either
  // way (everything the translator wrote into it was read, nothing the box has not acknowledged
  // is queued in it) and no FIN was seen either way. On success `fd` is moved from; on error it
  // stays with the caller and the flow goes on unchanged.
  [[nodiscard]] virtual base::Status hand_back(uint64_t id, base::UniqueFd& fd) = 0;
};

class FlowHandler {
 public:
  virtual ~FlowHandler() = default;
  // The translator serving this handler's flows, or null when it goes away.
  virtual void attach(FlowControl* control) { (void)control; }
  // An error means "refuse": the box gets RST and the error is audited ("net.fail").
  [[nodiscard]] virtual base::Result<OpenResult> on_open(const FlowInfo& info) = 0;
  // The flow is gone (its fd already closed by the translator).
  virtual void on_close(const FlowInfo& info, const FlowStats& stats) {
    (void)info;
    (void)stats;
  }
};

// Level-triggered readiness for fds the stack owns; epoll(7) event bits (EPOLLIN, ...).
class Poller {
 public:
  virtual ~Poller() = default;
  // Adds `fd` or changes its interest set; `token` comes back with its events.
  virtual void watch(int fd, uint32_t events, uint64_t token) = 0;
  virtual void unwatch(int fd) = 0;
};

// Frames to the box (the tap's write side). Dropping a frame is allowed (the box retransmits).
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual void send_frame(Bytes frame) = 0;
};

}  // namespace agentbox::net
