// Fuzz target: HTTP/1.1 response parsing under each request context, with a serialize round trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "agentbox/http/http1.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agentbox::http;
  const auto bytes = std::as_bytes(std::span(data, size));
  for (const RequestContext ctx :
       {RequestContext{}, RequestContext{.head = true}, RequestContext{.asked_upgrade = true}}) {
    const auto p = parse_response(bytes, ctx);
    if (p.status != ParseStatus::kOk) {
      continue;
    }
    if (p.head_bytes > size || p.message.status < 100 || p.message.status > 599) {
      std::abort();
    }
    const std::string out = serialize_head(p.message);
    const auto again = parse_response(std::as_bytes(std::span(out.data(), out.size())), ctx);
    if (again.status != ParseStatus::kOk || again.message.framing != p.message.framing ||
        again.message.status != p.message.status) {
      std::abort();
    }
  }
  return 0;
}
