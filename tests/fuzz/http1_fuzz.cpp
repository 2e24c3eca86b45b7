// Fuzz target: HTTP/1.1 request parsing, serialization round trip, classification, chunked.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "agentbox/http/http1.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agentbox::http;
  const auto bytes = std::as_bytes(std::span(data, size));
  (void)classify_stream(bytes);
  const auto p = parse_request(bytes);
  if (p.status == ParseStatus::kOk) {
    if (p.head_bytes > size) {
      std::abort();
    }
    // What the proxy forwards must parse back to the same request (no smuggling by rewrite).
    const std::string out = serialize_head(p.message);
    const auto again = parse_request(std::as_bytes(std::span(out.data(), out.size())));
    if (again.status != ParseStatus::kOk || again.message.framing != p.message.framing ||
        again.message.content_length != p.message.content_length ||
        again.message.host != p.message.host || again.head_bytes != out.size()) {
      std::abort();
    }
    if (p.message.framing == Framing::kChunked) {
      ChunkedDecoder d({.max_size_line = 256, .max_trailers = 1024, .max_body = 1 << 20});
      std::string body;
      const size_t used = d.feed(bytes.subspan(p.head_bytes), body);
      if (used > size - p.head_bytes || body.size() > (1u << 20)) {
        std::abort();
      }
    }
  }
  ChunkedDecoder d({.max_size_line = 64, .max_trailers = 256, .max_body = 1 << 16});
  std::string body;
  // Feed in two halves: the split must not change the outcome's safety.
  const size_t half = size / 2;
  size_t used = d.feed(bytes.first(half), body);
  if (used == half) {
    used += d.feed(bytes.subspan(half), body);
  }
  if (used > size) {
    std::abort();
  }
  return 0;
}
