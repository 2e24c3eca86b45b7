// Fuzz target: UDP datagrams (length field against the buffer, optional checksum).
#include <cstddef>
#include <cstdint>

#include "agentbox/net/wire.hpp"

using namespace agentbox::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)parse_udp({reinterpret_cast<const std::byte*>(data), size}, ip4(10, 0, 2, 100),
                  ip4(10, 0, 2, 3));
  return 0;
}
