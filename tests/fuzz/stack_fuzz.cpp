// Fuzz target: arbitrary frames into the whole stack (dispatch, ARP, ICMP, DNS, TCP translator).
// The handler accepts with socketpairs, so TCP flows really open and carry data; some inputs run
// inside a tap batch (held-back ACKs). IPv4 and transport checksums are repaired first (sums.hpp)
// so mutated frames reach the translator instead of stopping at the header check.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "agentbox/net/epoll_poller.hpp"
#include "agentbox/net/stack.hpp"
#include "sums.hpp"

using namespace agentbox;

namespace {

struct NullSink : net::FrameSink {
  void send_frame(net::Bytes) override {}
};

struct PairHandler : net::FlowHandler {
  base::Result<net::OpenResult> on_open(const net::FlowInfo&) override {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
      return base::Error::sys(errno, "socketpair");
    }
    peer.reset(sv[1]);  // keep only the latest peer open
    return net::OpenResult{.fd = base::UniqueFd(sv[0]), .connected = true};
  }
  base::UniqueFd peer;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto poller = *net::EpollPoller::create();
  static const auto policy = *policy::EgressPolicy::parse({"example.com", "10.0.2.0/24:*"});
  static NullSink sink;
  static PairHandler handler;
  static audit::MemorySink audit;
  static std::optional<net::Stack> stack;
  if (!stack) {
    stack.emplace(net::StackConfig{}, policy, handler, poller, sink, audit);
    (void)stack->pool().assign("example.com");  // 198.18.0.1
  }
  auto now = net::Clock::now();
  // Inputs whose size is a multiple of 3 open (or extend) a tap batch, as Stack::drain does, so
  // held-back ACKs meet the frames of later inputs, resets and closing flows; any other input
  // ends the batch first. Socket events and timers run only outside a batch, as in the loop.
  static bool batch = false;
  if (size % 3 == 0 && !batch) {
    stack->tcp().begin_batch();
    batch = true;
  } else if (size % 3 != 0 && batch) {
    stack->tcp().end_batch();
    batch = false;
  }
  std::vector<std::byte> frame = fuzz::copy(data, size);
  fuzz::fix_frame(frame);
  stack->on_frame(frame, now);
  if (batch) {
    return 0;
  }
  for (auto [token, events] : poller.wait(0)) {
    stack->tcp().on_socket(token, events, now);
  }
  stack->tcp().on_timer(now + std::chrono::seconds(5));
  return 0;
}
