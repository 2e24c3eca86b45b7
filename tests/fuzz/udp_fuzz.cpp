// Fuzz target: UDP datagrams (length field against the buffer). A non-zero checksum is repaired
// first (sums.hpp); zero (no checksum) stays, so both paths are reached.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbox/net/wire.hpp"
#include "sums.hpp"

using namespace agentbox::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Ip4 src = ip4(10, 0, 2, 100);
  const Ip4 dst = ip4(10, 0, 2, 3);
  std::vector<std::byte> d = agentbox::fuzz::copy(data, size);
  agentbox::fuzz::fix_l4(d, 0, d.size(), src, dst, kProtoUdp);
  auto u = parse_udp(d, src, dst);
  if (u && u->payload.size() > d.size()) {
    __builtin_trap();  // the payload must lie inside the input
  }
  return 0;
}
