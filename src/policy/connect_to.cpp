// The --connect-to grammar (HOST:PORT:ADDR:PORT) and the host services' PORT[:PORT].
#include "agentbox/policy/connect_to.hpp"

#include <charconv>
#include <optional>

#include "agentbox/policy/host.hpp"

namespace agentbox::policy {

namespace {

std::optional<uint16_t> parse_connect_port(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(v);
}

}  // namespace

base::Result<ConnectTo> parse_connect_to(std::string_view s) {
  auto c1 = s.find(':');
  auto c2 = c1 == std::string_view::npos ? c1 : s.find(':', c1 + 1);
  auto c3 = s.rfind(':');
  if (c1 == std::string_view::npos || c2 == std::string_view::npos || c3 <= c2) {
    return base::Error::msg("expected four fields");
  }
  auto host = normalize_name(s.substr(0, c1));
  auto port = parse_connect_port(s.substr(c1 + 1, c2 - c1 - 1));
  auto addr_text = s.substr(c2 + 1, c3 - c2 - 1);
  if (addr_text.size() >= 2 && addr_text.front() == '[' && addr_text.back() == ']') {
    addr_text = addr_text.substr(1, addr_text.size() - 2);
  }
  auto addr = parse_ip(addr_text);
  auto to_port = parse_connect_port(s.substr(c3 + 1));
  if (!host) {
    return base::Error::msg("HOST is not a valid host name");
  }
  if (!port || !to_port) {
    return base::Error::msg("ports must be 1-65535");
  }
  if (!addr) {
    return base::Error::msg("ADDR must be an IP address");
  }
  return ConnectTo{.host = *host, .port = *port, .addr = *addr, .to_port = *to_port};
}

base::Result<PortMap> parse_port_map(std::string_view s) {
  auto colon = s.find(':');
  auto port = parse_connect_port(s.substr(0, colon));
  auto to_port = colon == std::string_view::npos ? port : parse_connect_port(s.substr(colon + 1));
  if (!port || !to_port) {
    return base::Error::msg("expected PORT or PORT:PORT, ports 1-65535");
  }
  return PortMap{.port = *port, .to_port = *to_port};
}

}  // namespace agentbox::policy
