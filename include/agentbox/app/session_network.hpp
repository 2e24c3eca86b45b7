// The session's network, seen from app: the egress policy from the config, the tap hook the
// launcher runs in init, and, once the box runs, the userspace stack on the event loop.
//
// Theory of operation:
//   create()  config::Policy (network.allow + network.raw_tcp rules, network.connect_to) ->
//             policy::EgressPolicy + --connect-to overrides (already validated by config::load:
//             one grammar, in policy/); prepares net::TapSetup for the launcher's BoxNetwork hook.
//   start()   takes the tap fd init sent, builds the Stack (FdTap, a Poller over the loop's epoll,
//             the FlowHandler chosen in one place, choose_flow_handler: the factory's (the L7
//             proxy) when one was installed, else ConnectHandler) and one timerfd for the
//             TCP retransmission/persist deadlines, re-armed after every event.
//   finish()  after the box ended: every flow and watch is dropped (before the loop goes away),
//             and the summary lines say which hosts were allowed and denied how often.
// Audit events of the stack pass through a tee that forwards them to the session's log and keeps
// the per-host counts; with -v it also prints each connection's close and each DNS answer on
// the debug stream (the stack itself logs opens and denials there).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agentbox/app/host_services.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/config/model.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/net/connect.hpp"
#include "agentbox/net/flow.hpp"
#include "agentbox/policy/approval.hpp"
#include "agentbox/policy/egress.hpp"
#include "agentbox/sandbox/box_network.hpp"

namespace agentbox::app {

class SessionNetwork {
 public:
  // `gid`: the box's group (may open ICMP echo sockets). Rules that fail to parse (config::load
  // validates them first, so only a caller that skipped it sees this) name their origin.
  [[nodiscard]] static base::Result<std::unique_ptr<SessionNetwork>> create(
      const config::Policy& policy, unsigned gid, audit::Sink& sink);
  ~SessionNetwork();
  SessionNetwork(const SessionNetwork&) = delete;
  SessionNetwork& operator=(const SessionNetwork&) = delete;

  // Who serves allowed flows once the loop runs (the L7 proxy); without one, connect first.
  using HandlerFactory = std::function<base::Result<std::unique_ptr<net::FlowHandler>>(
      event::Loop&, const policy::EgressPolicy&, const std::vector<net::ConnectTo>&)>;
  void use_handler_factory(HandlerFactory factory);

  // Who is asked about names under `network.ask` / `network.unlisted = "ask"` (app's
  // Approvals); it must stay until set back to null. Null: such names are denied.
  void use_approver(policy::Approver* approver);
  [[nodiscard]] bool asks() const;  // any ask rule, or unlisted = "ask"
  // The launcher's hook (LaunchSpec::network): creates and configures the tap in init.
  [[nodiscard]] const sandbox::BoxNetwork* box_hook() const;
  // The box must be started with a socket factory (LaunchSpec::socket_factory): --publish.
  [[nodiscard]] bool needs_socket_factory() const;
  // Serves the tap on `loop` until finish(). `loop` must outlive that. `extra` and
  // `socket_factory`: what the box sent besides the tap (Box::take_network_extra(),
  // take_socket_factory()), for the host services (app/host_services.hpp).
  [[nodiscard]] base::Status start(base::UniqueFd tap, event::Loop& loop,
                                   std::vector<base::UniqueFd> extra = {},
                                   base::UniqueFd socket_factory = {});
  // Run-time policy (the control socket; call on the loop thread). The stack and the proxy
  // consult this same EgressPolicy object, so the next DNS answer and connection see a change;
  // nothing else in the data path knows who changed it.
  void allow(policy::EgressRule rule, config::Origin origin);
  // Denies from now on and resets the live flows to a name or address `rule` matches; returns
  // how many were reset.
  size_t deny(policy::EgressRule rule, config::Origin origin);
  struct RuleLine {
    std::string verdict;  // "allow" or "deny"
    std::string rule;     // as written
    std::string origin;   // file:line:col, a flag, or who changed it at run time
  };
  [[nodiscard]] std::vector<RuleLine> rules() const;
  struct Counts {
    uint64_t allowed = 0;  // connections
    uint64_t denied = 0;   // DNS queries and connections
    uint64_t failed = 0;   // allowed, failed upstream
    uint64_t open = 0;     // flows open now
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
  };
  [[nodiscard]] Counts counts() const;
  // Stops serving and returns the exit-summary lines (empty when the box never used the network).
  [[nodiscard]] std::vector<std::string> finish();

  struct Impl;

 private:
  explicit SessionNetwork(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentbox::app
