// `--connect-to HOST:PORT:ADDR:PORT` (curl's shape): the user's own mapping of a name and port
// onto an address, e.g. a test server on loopback. One grammar for config validation and for the
// connect handler that applies it. A mapping grants nothing: an allow rule must still admit
// HOST:PORT; the mapped address is trusted (the user wrote it), so loopback is fine there.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"
#include "agentbox/policy/ip.hpp"

namespace agentbox::policy {

struct ConnectTo {
  std::string host;  // normalized name
  uint16_t port = 0;
  IpAddr addr;
  uint16_t to_port = 0;
};

// ADDR is an IP literal (IPv6 in brackets); ports 1-65535. The error says what is wrong, briefly
// ("ADDR must be an IP address"); callers name the flag or file position.
[[nodiscard]] base::Result<ConnectTo> parse_connect_to(std::string_view s);

// `--host-port PORT[:HOSTPORT]` and `--publish PORT[:BOXPORT]`: a port, optionally mapped onto
// another (the second defaults to the first). Only decimal 1-65535; no address: both ends are
// loopback by construction (docs/NETWORK.md, "Host services").
struct PortMap {
  uint16_t port = 0;
  uint16_t to_port = 0;
};
[[nodiscard]] base::Result<PortMap> parse_port_map(std::string_view s);

}  // namespace agentbox::policy
