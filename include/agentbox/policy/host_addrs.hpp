// The host's own interface addresses, as egress policy sees them.
//
// A public address on one of the host's interfaces (a NIC's IPv4, a global IPv6) is not special
// by range, yet a connection to it reaches every service the host binds to all interfaces. An
// allowed name that resolves to one, or a literal allowed by a wide CIDR rule, is refused like a
// loopback address: only a CIDR rule no wider than the interface's network names it. The set is
// filled and kept current by net::HostAddrWatch (netlink) on the supervisor's loop; EgressPolicy
// reads it on the same thread.
#pragma once

#include <optional>
#include <vector>

#include "agentbox/policy/ip.hpp"

namespace agentbox::policy {

class HostAddrs {
 public:
  struct Entry {
    IpAddr addr;
    Cidr net;  // the interface's network (address/prefix, host bits cleared)
  };
  void replace(std::vector<Entry> entries) { entries_ = std::move(entries); }
  // The network of the interface that holds `a`, if the host holds `a`.
  [[nodiscard]] std::optional<Cidr> find(const IpAddr& a) const {
    for (const auto& e : entries_) {
      if (e.addr == a) {
        return e.net;
      }
    }
    return std::nullopt;
  }
  [[nodiscard]] const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
};

}  // namespace agentbox::policy
