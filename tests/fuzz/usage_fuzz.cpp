// Fuzz target: the model usage reader (proxy/usage.cpp) on arbitrary response bodies. The first
// byte picks the framing (even: JSON, odd: SSE), the second seeds the read boundaries. Whatever
// the bytes, it must not crash, and the reading must not depend on how the body was cut: fed
// whole, byte by byte, in seeded pieces of up to 64 bytes and of up to 2 KiB (events cut and
// held, UsageMeter::kMaxHeld), the model and the counts are the byte scanner's alone
// (UsageMeter::scanner_only, no event passed over).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agentbox/proxy/usage.hpp"

namespace {

using agentbox::proxy::UsageMeter;

// `step` 0: seeded pieces of 1 to `most` bytes.
UsageMeter::Reading read(UsageMeter m, std::string_view body, size_t step, uint8_t seed,
                         uint32_t most = 64) {
  size_t at = 0;
  uint32_t x = seed | 1U;
  while (at < body.size()) {
    size_t n = step;
    if (n == 0) {
      x = x * 1103515245U + 12345U;
      n = 1 + (x >> 16) % most;
    }
    n = std::min(n, body.size() - at);
    m.feed(body.substr(at, n));
    at += n;
  }
  return m.finish();
}

bool same(const UsageMeter::Reading& a, const UsageMeter::Reading& b) {
  return a.seen == b.seen && a.model == b.model && a.tokens.input == b.tokens.input &&
         a.tokens.output == b.tokens.output && a.tokens.cached == b.tokens.cached;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) {
    return 0;
  }
  const auto f = (data[0] & 1U) != 0 ? UsageMeter::Format::kSse : UsageMeter::Format::kJson;
  const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  const auto scanner = read(UsageMeter::scanner_only(f), body, body.size() + 1, data[1]);
  const UsageMeter m(f);
  if (!same(scanner, read(m, body, body.size() + 1, data[1])) ||
      !same(scanner, read(m, body, 1, data[1])) || !same(scanner, read(m, body, 0, data[1])) ||
      !same(scanner, read(m, body, 0, data[1], 2048))) {
    std::abort();
  }
  return 0;
}
