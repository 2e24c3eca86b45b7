// EgressPolicy: deny-by-default allow rules for outbound connections, and the decision function.
//
// Rules, as written in config (`policy.net_allow`) or on the command line (`--allow`):
//   host[:port]       example.com, example.com:8443, *.example.com, example.com:*
//   CIDR[:port]       10.1.2.0/24:5432, 1.2.3.4, [fd00::/8]:22, [::1]:8080
// Without a port a rule allows 443 and 80. Names and literal addresses are separate worlds: a
// host rule never matches a literal address, a CIDR rule never matches a name.
// A literal in any spelling (2130706433, 0x7f000001, 0177.0.0.1, 127.1) is an address.
//
// Special ranges (loopback, private, link-local, metadata, ...; see ip.hpp) are refused unless a
// CIDR rule names them explicitly: it contains the address and is no wider than the special
// range itself (10.0.0.0/8 names the private range; 0.0.0.0/0 does not). This applies both to
// literal destinations and to the address an allowed name resolved to (check_resolved).
// The host's own interface addresses (host_addrs.hpp) count as special too, their range being the
// interface's network, once use_host_addrs() gave the policy the session's live set.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/policy/host.hpp"
#include "agentbox/policy/host_addrs.hpp"
#include "agentbox/policy/ip.hpp"

namespace agentbox::policy {

struct PortSet {
  bool any = false;
  std::vector<uint16_t> ports;  // used when !any
  [[nodiscard]] bool contains(uint16_t p) const;
  [[nodiscard]] std::string to_string() const;
};

struct EgressRule {
  std::variant<HostPattern, Cidr> target;
  PortSet ports;
  std::string text;  // as written, for audit and explain

  [[nodiscard]] static base::Result<EgressRule> parse(std::string_view s);
};

struct Decision {
  bool allowed = false;
  std::optional<size_t> rule;  // index into rules() of the matching rule
  std::string rule_text;       // empty when denied
  std::string reason;          // why denied ("no rule", "invalid name", "loopback address", ...)
};

class EgressPolicy {
 public:
  EgressPolicy() = default;
  explicit EgressPolicy(std::vector<EgressRule> rules) : rules_(std::move(rules)) {}
  // Parses every rule, reporting all bad ones in one error.
  [[nodiscard]] static base::Result<EgressPolicy> parse(const std::vector<std::string>& rules);

  void add(EgressRule r) { rules_.push_back(std::move(r)); }
  // The host's interface addresses, read at every decision (kept current by its owner).
  void use_host_addrs(std::shared_ptr<const HostAddrs> addrs) { host_addrs_ = std::move(addrs); }
  [[nodiscard]] const std::vector<EgressRule>& rules() const { return rules_; }
  // Denials added while a session runs (`agentbox deny`): checked before every allow rule, so a
  // deny of a name wins over `*.parent` allowing it. A name denied on every port gets no DNS
  // answer either (decide_name_any_port).
  void add_deny(EgressRule r) { denies_.push_back(std::move(r)); }
  [[nodiscard]] const std::vector<EgressRule>& denies() const { return denies_; }
  // Remove the allow (deny) rules written as `text`; the number removed.
  size_t remove_rule(std::string_view text);
  size_t remove_deny(std::string_view text);

  // Approvals (approval.hpp): names a person is asked about rather than denied (network.ask,
  // --ask), or every name no rule admits (network.unlisted = "ask"). Only the DNS responder
  // reads them; with none set, nothing about a decision changes.
  void add_ask(EgressRule r) { asks_.push_back(std::move(r)); }
  void set_ask_unlisted(bool on) { ask_unlisted_ = on; }
  [[nodiscard]] bool asks_anything() const { return ask_unlisted_ || !asks_.empty(); }
  // For a name decide_name_any_port() denied: the rule "for this session" adds (the name with
  // the matching ask rule's port, e.g. "api.example.com:8443"; a bare name under `unlisted`),
  // or nullopt when no one is to be asked (no ask rule matches, invalid, denied at run time).
  [[nodiscard]] std::optional<std::string> ask_rule(std::string_view name) const;
  // `target` is a host name or an address literal in any spelling.
  [[nodiscard]] Decision decide(std::string_view target, uint16_t port) const;
  [[nodiscard]] Decision decide_address(const IpAddr& addr, uint16_t port) const;
  // Would any port of `name` be allowed? (DNS answers before the port is known.)
  [[nodiscard]] Decision decide_name_any_port(std::string_view name) const;
  // For an allowed name: may we connect to the address it resolved to? Public addresses yes;
  // special ones only when a CIDR rule names them explicitly (DNS rebinding / SSRF guard).
  [[nodiscard]] Decision check_resolved(const IpAddr& addr, uint16_t port) const;

 private:
  // classify(), plus kHost for the host's own addresses.
  [[nodiscard]] Classification classify_dest(const IpAddr& addr) const;
  [[nodiscard]] const EgressRule* denied(std::string_view name, std::optional<uint16_t> port) const;
  [[nodiscard]] const EgressRule* denied(const IpAddr& addr, uint16_t port) const;

  std::vector<EgressRule> rules_;
  std::vector<EgressRule> denies_;
  std::vector<EgressRule> asks_;
  bool ask_unlisted_ = false;
  std::shared_ptr<const HostAddrs> host_addrs_;
};

}  // namespace agentbox::policy
