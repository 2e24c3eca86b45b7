// Fuzz target: the control protocol's request decoder on arbitrary lines. A decoded request
// encodes back to one line that decodes to the same request; an error answer is one line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agentbox/control/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agentbox::control;
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto r = parse_request(line);
  if (r) {
    std::string again = encode_request(*r);
    if (again.empty() || again.back() != '\n' || again.find('\n') != again.size() - 1) {
      std::abort();
    }
    auto back = parse_request(std::string_view(again).substr(0, again.size() - 1));
    if (!back || back->verb != r->verb || back->args != r->args) {
      std::abort();
    }
  } else {
    std::string e = encode_error(r.error().message());
    if (e.find('\n') != e.size() - 1) {
      std::abort();
    }
  }
  return 0;
}
