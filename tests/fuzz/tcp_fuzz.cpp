// Fuzz target: TCP segments (header length, options). The checksum is fixed up first so the
// fuzzer reaches the option parser instead of stopping at the checksum.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbox/net/wire.hpp"
#include "sums.hpp"

using namespace agentbox::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> seg = agentbox::fuzz::copy(data, size);
  const Ip4 src = ip4(10, 0, 2, 100);
  const Ip4 dst = ip4(198, 18, 0, 1);
  agentbox::fuzz::fix_l4(seg, 0, seg.size(), src, dst, kProtoTcp);
  auto t = parse_tcp(seg, src, dst);
  if (t && (t->payload.size() > seg.size() || (t->options.wscale && *t->options.wscale > 14))) {
    __builtin_trap();
  }
  return 0;
}
