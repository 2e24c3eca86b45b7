// Fuzz target: ARP payloads (after the Ethernet header).
#include <cstddef>
#include <cstdint>

#include "agentbox/net/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)agentbox::net::parse_arp({reinterpret_cast<const std::byte*>(data), size});
  return 0;
}
