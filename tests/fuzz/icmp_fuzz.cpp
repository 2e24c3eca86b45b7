// Fuzz target: ICMP messages (echo only is accepted). The checksum is repaired first (sums.hpp).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbox/net/wire.hpp"
#include "sums.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> m = agentbox::fuzz::copy(data, size);
  agentbox::fuzz::fix_l4(m, 0, m.size(), 0, 0, 0);
  (void)agentbox::net::parse_icmp_echo(m);
  return 0;
}
