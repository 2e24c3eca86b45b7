// Fuzz target: IPv4 packets (header, options, total length, fragments). The header checksum is
// repaired first (sums.hpp), or almost no mutation would get past it.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbox/net/wire.hpp"
#include "sums.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> pkt = agentbox::fuzz::copy(data, size);
  agentbox::fuzz::fix_ipv4(pkt, 0);
  auto ip = agentbox::net::parse_ipv4(pkt);
  if (ip && ip->payload.size() > size) {
    __builtin_trap();  // the payload must lie inside the input
  }
  return 0;
}
