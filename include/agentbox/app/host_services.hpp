// Host services: the box's localhost:PORT reaching a port on the host's loopback
// (`--host-port`), and the host's 127.0.0.1:PORT reaching a server on the box's localhost
// (`--publish`). Both are explicit and deny-by-default: with neither flag nothing here exists.
//
// Theory of operation (docs/NETWORK.md, "Host services"):
//   create()      parses network.host_ports / network.publish (policy's PORT[:PORT] grammar),
//                 refuses duplicates, and binds each published port on the host's 127.0.0.1
//                 (a taken port fails the session before the box starts, with one line).
//   box_setup()   runs in init, inside the box's new network namespace (the TapHook): one
//                 listener on 127.0.0.1:PORT and one on [::1]:PORT (IPV6_V6ONLY) per host port.
//                 They travel to the supervisor with the tap fd; the box never holds them.
//   start()       watches both kinds of listener on the session loop. A box connection accepted
//                 on a listener connects to the host's 127.0.0.1:HOSTPORT (then [::1]:HOSTPORT if
//                 that is refused): the port comes from the listener the supervisor made, never
//                 from anything the box sends, so no other host port or address is reachable. A
//                 host connection accepted on a published port gets a socket of the box's network
//                 namespace from init's socket factory and connects it to the box's
//                 127.0.0.1:BOXPORT (then [::1]:BOXPORT). Then bytes are relayed both ways (64 KiB
//                 per direction, half-close kept), at most kMaxConns at once.
//   finish()      closes everything; the summary lines count the connections per port.
// Audit: `host.open` {id, service: host_port|publish, port, to_port, family}, `host.fail`
// {id, service, port, to_port, error}, `host.close` {id, service, port, to_port, bytes_in,
// bytes_out} (bytes_in: towards the box).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/config/model.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/sandbox/box_network.hpp"

namespace agentbox::app {

class HostServices {
 public:
  static constexpr size_t kMaxHostPorts = sandbox::kMaxNetworkExtraFds / 2;
  static constexpr size_t kMaxConns = 256;

  // Null when the policy has neither host ports nor published ports (nothing to do, no cost).
  [[nodiscard]] static base::Result<std::unique_ptr<HostServices>> create(
      const config::Policy& policy);
  ~HostServices();
  HostServices(const HostServices&) = delete;
  HostServices& operator=(const HostServices&) = delete;

  // In init, inside the box's network namespace: the listeners of the host ports, into `out`.
  // noexcept and allocation-free. Returns 0 or an errno (the box then fails to start).
  [[nodiscard]] int box_setup(sandbox::NetworkSetupResult& out) const noexcept;
  [[nodiscard]] bool needs_socket_factory() const;

  [[nodiscard]] base::Status start(event::Loop& loop, std::vector<base::UniqueFd> box_listeners,
                                   base::UniqueFd socket_factory, audit::Sink& sink);
  // -v lines at start: the mappings.
  [[nodiscard]] std::vector<std::string> describe() const;
  // Closes every connection and listener; the summary lines.
  [[nodiscard]] std::vector<std::string> finish();

  struct Impl;

 private:
  explicit HostServices(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentbox::app
