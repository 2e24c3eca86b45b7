// The default FlowHandler: resolve the name in the supervisor, check the address, connect.
//
// Order: a `--connect-to HOST:PORT:ADDR:PORT` override (the user's own mapping: its address is
// trusted, so tests and local services can be reached on loopback) -> otherwise resolve the name
// (getaddrinfo, or an injected resolver) -> drop every address in a special range unless a CIDR
// rule names it (EgressPolicy::check_resolved: DNS rebinding / SSRF guard) -> non-blocking
// connect to the first remaining address. The translator answers SYN-ACK when it completes.
// on_open resolves synchronously (getaddrinfo blocks the caller): it serves the bare network
// (no proxy: tests, benchmarks). The session's proxy uses open_direct / connect_resolved around
// an AsyncResolver (resolver.hpp), so no lookup runs on the event loop.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agentbox/net/flow.hpp"
#include "agentbox/policy/connect_to.hpp"
#include "agentbox/policy/egress.hpp"

namespace agentbox::net {

// The --connect-to grammar lives in policy (config validates with it too).
using ConnectTo = policy::ConnectTo;
// Each spec parsed; the first bad one is the error, naming it.
[[nodiscard]] base::Result<ConnectTo> parse_connect_to(std::string_view s);
[[nodiscard]] base::Result<std::vector<ConnectTo>> parse_connect_to(
    const std::vector<std::string>& specs);

using Resolver = std::function<base::Result<std::vector<policy::IpAddr>>(const std::string&)>;
// getaddrinfo(AF_UNSPEC, SOCK_STREAM).
[[nodiscard]] base::Result<std::vector<policy::IpAddr>> system_resolve(const std::string& name);

class ConnectHandler : public FlowHandler {
 public:
  ConnectHandler(const policy::EgressPolicy& policy, std::vector<ConnectTo> overrides,
                 Resolver resolver = system_resolve)
      : policy_(policy), overrides_(std::move(overrides)), resolver_(std::move(resolver)) {}
  [[nodiscard]] base::Result<OpenResult> on_open(const FlowInfo& info) override;
  // A --connect-to override or a literal address: connected without a lookup. nullopt: the
  // name must be resolved first.
  [[nodiscard]] std::optional<base::Result<OpenResult>> open_direct(const FlowInfo& info) const;
  // The rebinding guard on every resolved address, then a connect to the first one allowed.
  [[nodiscard]] base::Result<OpenResult> connect_resolved(
      const FlowInfo& info, const std::vector<policy::IpAddr>& addrs) const;

 private:
  const policy::EgressPolicy& policy_;
  std::vector<ConnectTo> overrides_;
  Resolver resolver_;
};

// Non-blocking, close-on-exec connect to addr:port. connected=false while in progress.
// `buffers`: SO_SNDBUF and SO_RCVBUF set before the connect (BufferGrant::upstream; 0: default).
[[nodiscard]] base::Result<OpenResult> connect_nonblocking(const policy::IpAddr& addr,
                                                           uint16_t port, uint64_t buffers = 0);

}  // namespace agentbox::net
