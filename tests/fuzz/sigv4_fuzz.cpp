// Fuzz target: the SigV4 Authorization parser and verification on arbitrary box input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agentbox/cred/sigv4.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace s = agentbox::cred::sigv4;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // First line: the Authorization value; second: the request target; the rest: X-Amz-Date.
  size_t a = in.find('\n');
  std::string_view auth = in.substr(0, a);
  std::string_view rest = a == std::string_view::npos ? std::string_view{} : in.substr(a + 1);
  size_t b = rest.find('\n');
  std::string_view target = rest.substr(0, b);
  std::string_view date = b == std::string_view::npos ? std::string_view{} : rest.substr(b + 1);

  if (auto parsed = s::parse_authorization(auth)) {
    // What parses renders into something that parses to the same thing.
    auto again = s::parse_authorization(parsed->render());
    if (!again || again->signature != parsed->signature ||
        again->signed_headers != parsed->signed_headers || again->scope() != parsed->scope()) {
      std::abort();
    }
  }
  agentbox::http::Request req;
  req.method = "GET";
  req.target = std::string(target);
  req.headers = {{"Host", "example.amazonaws.com"},
                 {"X-Amz-Date", std::string(date)},
                 {"Authorization", std::string(auth)}};
  (void)s::verify(req, "placeholder-secret-key", s::sha256_hex(""));
  return 0;
}
