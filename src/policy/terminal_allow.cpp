// `[terminal] allow` entries: "osc" and a decimal number.
#include "agentbox/policy/terminal_allow.hpp"

#include <fmt/core.h>

namespace agentbox::policy {

base::Result<uint32_t> parse_terminal_allow(std::string_view entry) {
  constexpr std::string_view kPrefix = "osc";
  std::string_view digits = entry.substr(0, kPrefix.size()) == kPrefix
                                ? entry.substr(kPrefix.size())
                                : std::string_view{};
  uint32_t n = 0;
  bool ok = !digits.empty() && digits.size() <= 5;
  for (char ch : digits) {
    ok = ok && ch >= '0' && ch <= '9';
    n = n * 10 + static_cast<uint32_t>(ch - '0');
  }
  if (!ok || n > 65535) {
    return base::Error::msg(
        fmt::format("`{}` is not an OSC kind: expected osc8 (links), osc52 (clipboard writes) or "
                    "oscN (N a number up to 65535)",
                    entry));
  }
  return n;
}

}  // namespace agentbox::policy
