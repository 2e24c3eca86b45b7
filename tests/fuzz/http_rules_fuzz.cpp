// Fuzz target: HTTP rule matching (path globs, request-target paths, audit paths) on arbitrary
// input, with its invariants checked. Input: pattern, a NUL, then the request-target.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agentbox/http/http_rules.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agentbox::http;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const auto pattern = in.substr(0, nul);
  const auto target = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
  const auto path = target_path(target);
  if (path.size() > target.size()) {
    std::abort();
  }
  (void)glob_match(pattern, path);
  if (path.find('*') == std::string_view::npos && !glob_match(path, path)) {
    std::abort();  // a literal pattern matches itself
  }
  if (!glob_match("**", path)) {
    std::abort();
  }
  // The audit path keeps parameter names, never values.
  const std::string a = audit_path(target);
  if (a.size() > 512) {
    std::abort();
  }
  const size_t q = a.find('?');
  for (size_t i = q == std::string::npos ? a.size() : q; i < a.size(); ++i) {
    if (a[i] == '=' && i + 1 < a.size() && a[i + 1] != '&') {
      std::abort();
    }
  }
  auto rules = HttpRules::create({{.origin = "fuzz",
                                   .host = "fuzz.test",
                                   .methods = {"GET"},
                                   .paths = {std::string(pattern)}}});
  if (rules) {
    const auto v = rules->check("fuzz.test", "GET", target);
    if (!v.named || (v.allowed && v.rule != "fuzz")) {
      std::abort();
    }
    if (rules->check("other.test", "GET", target).named) {
      std::abort();
    }
  }
  return 0;
}
