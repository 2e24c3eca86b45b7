// Fuzz target: IPv4 packets (header, options, total length, fragments, checksum).
#include <cstddef>
#include <cstdint>

#include "agentbox/net/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto ip = agentbox::net::parse_ipv4({reinterpret_cast<const std::byte*>(data), size});
  if (ip && ip->payload.size() > size) {
    __builtin_trap();  // the payload must lie inside the input
  }
  return 0;
}
