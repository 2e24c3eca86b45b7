// Fuzz target: ICMP messages (echo only is accepted).
#include <cstddef>
#include <cstdint>

#include "agentbox/net/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)agentbox::net::parse_icmp_echo({reinterpret_cast<const std::byte*>(data), size});
  return 0;
}
