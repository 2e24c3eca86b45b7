// Fuzz target: TCP segments (header length, options). The checksum is fixed up first so the
// fuzzer reaches the option parser instead of stopping at the checksum.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbox/net/wire.hpp"

using namespace agentbox::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> seg(reinterpret_cast<const std::byte*>(data),
                             reinterpret_cast<const std::byte*>(data) + size);
  const Ip4 src = ip4(10, 0, 2, 100);
  const Ip4 dst = ip4(198, 18, 0, 1);
  if (seg.size() >= 18) {
    seg[16] = seg[17] = std::byte{0};
    uint16_t sum =
        checksum_fold(checksum_add(pseudo_header_sum(src, dst, kProtoTcp, seg.size()), seg));
    seg[16] = std::byte{static_cast<uint8_t>(sum >> 8)};
    seg[17] = std::byte{static_cast<uint8_t>(sum)};
  }
  auto t = parse_tcp(seg, src, dst);
  if (t && (t->payload.size() > seg.size() || (t->options.wscale && *t->options.wscale > 14))) {
    __builtin_trap();
  }
  return 0;
}
