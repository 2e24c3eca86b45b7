// Egress rule grammar and the allow/deny decision.
#include "agentbox/policy/egress.hpp"

#include <fmt/core.h>

#include <charconv>

namespace agentbox::policy {

using base::Error;
using base::Result;

bool PortSet::contains(uint16_t p) const {
  if (any) {
    return true;
  }
  for (auto q : ports) {
    if (q == p) {
      return true;
    }
  }
  return false;
}

std::string PortSet::to_string() const {
  if (any) {
    return "*";
  }
  std::string s;
  for (auto p : ports) {
    // Appending in two steps: g++ 12 at -O3 reports a false -Wrestrict on `"," + std::string&&`.
    if (!s.empty()) {
      s += ',';
    }
    s += std::to_string(p);
  }
  return s;
}

namespace {

std::optional<PortSet> parse_port(std::string_view s) {
  if (s == "*") {
    return PortSet{.any = true, .ports = {}};
  }
  if (s.empty() || s.size() > 5 || s[0] == '0') {
    return std::nullopt;
  }
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v == 0 || v > 65535) {
    return std::nullopt;
  }
  return PortSet{.any = false, .ports = {static_cast<uint16_t>(v)}};
}

const PortSet kDefaultPorts{.any = false, .ports = {443, 80}};

// `rule` already contains the address: it names the special range if it is no wider than it.
bool names_special(const Cidr& rule, const Classification& c) {
  return rule.base.family == c.range.base.family && rule.prefix >= c.range.prefix;
}

IpAddr unmap(const IpAddr& a) {
  auto v4 = a.unmapped_v4();
  return v4 ? *v4 : a;
}

}  // namespace

Result<EgressRule> EgressRule::parse(std::string_view s) {
  auto bad = [&](std::string_view why) {
    return Error::msg(fmt::format("bad egress rule `{}`: {}", s, why))
        .hint(
            "write host[:port], *.host[:port] or CIDR[:port], e.g. api.github.com, "
            "*.npmjs.org:443, 10.0.0.0/8:5432, [::1]:8080");
  };
  if (s.empty() || s.find_first_of(std::string_view(" \t\r\n\0", 5)) != std::string_view::npos) {
    return bad("empty or contains whitespace/NUL");
  }
  if (auto scheme = s.find("://"); scheme != std::string_view::npos) {
    // A URL pasted as a rule: say which part a rule takes rather than "bad port".
    std::string_view rest = s.substr(scheme + 3);
    rest = rest.substr(0, rest.find('/'));
    return bad(
        fmt::format("a rule names a host, not a URL: drop the scheme and path, `{}` (ports "
                    "443 and 80 by default) or `{}:PORT`",
                    rest, rest.substr(0, rest.find(':'))));
  }
  std::string_view target = s;
  std::optional<PortSet> ports = kDefaultPorts;
  if (s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos) {
      return bad("missing `]`");
    }
    target = s.substr(1, close - 1);
    auto rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return bad("junk after `]`");
      }
      ports = parse_port(rest.substr(1));
    }
  } else if (s.find(':') != s.rfind(':')) {
    target = s;  // bare IPv6 (CIDR) without a port
  } else if (auto colon = s.find(':'); colon != std::string_view::npos) {
    target = s.substr(0, colon);
    ports = parse_port(s.substr(colon + 1));
  }
  if (!ports) {
    return bad("port must be 1-65535 or *");
  }
  if (auto cidr = Cidr::parse(target)) {
    return EgressRule{.target = *cidr, .ports = *ports, .text = std::string(s)};
  }
  if (target.find('/') != std::string_view::npos || looks_like_ip_literal(target)) {
    return bad("not a valid address or CIDR (write addresses as a.b.c.d or an IPv6 literal)");
  }
  auto host = HostPattern::parse(target);
  if (!host) {
    return bad("not a valid host name or pattern (`*.` only as the whole first label)");
  }
  return EgressRule{.target = *host, .ports = *ports, .text = std::string(s)};
}

Result<EgressPolicy> EgressPolicy::parse(const std::vector<std::string>& rules) {
  EgressPolicy p;
  std::string errors;
  for (const auto& r : rules) {
    auto rule = EgressRule::parse(r);
    if (!rule) {
      errors += (errors.empty() ? "" : "; ") + rule.error().message();
      continue;
    }
    p.add(std::move(*rule));
  }
  if (!errors.empty()) {
    return Error::msg(errors);
  }
  return p;
}

namespace {

std::string deny_reason(const EgressRule& r) {
  return fmt::format("denied at run time by `{}`", r.text);
}

size_t remove_text(std::vector<EgressRule>& rules, std::string_view text) {
  return std::erase_if(rules, [&](const EgressRule& r) { return r.text == text; });
}

}  // namespace

size_t EgressPolicy::remove_rule(std::string_view text) {
  return remove_text(rules_, text);
}

size_t EgressPolicy::remove_deny(std::string_view text) {
  return remove_text(denies_, text);
}

// `port` nullopt: every port (a DNS question), so only a deny of every port counts.
const EgressRule* EgressPolicy::denied(std::string_view name, std::optional<uint16_t> port) const {
  for (const auto& d : denies_) {
    const auto* host = std::get_if<HostPattern>(&d.target);
    if (host && host->matches(name) && (port ? d.ports.contains(*port) : d.ports.any)) {
      return &d;
    }
  }
  return nullptr;
}

const EgressRule* EgressPolicy::denied(const IpAddr& addr, uint16_t port) const {
  for (const auto& d : denies_) {
    const auto* cidr = std::get_if<Cidr>(&d.target);
    if (cidr && cidr->contains(addr) && d.ports.contains(port)) {
      return &d;
    }
  }
  return nullptr;
}

Decision EgressPolicy::decide(std::string_view target, uint16_t port) const {
  if (looks_like_ip_literal(target)) {
    auto addr = parse_ip_literal(target);
    if (!addr) {
      return {.allowed = false, .rule = {}, .rule_text = {}, .reason = "invalid address literal"};
    }
    return decide_address(*addr, port);
  }
  auto name = normalize_name(target);
  if (!name) {
    return {.allowed = false, .rule = {}, .rule_text = {}, .reason = "invalid name"};
  }
  if (const EgressRule* d = denied(*name, port)) {
    return {.allowed = false, .rule = {}, .rule_text = {}, .reason = deny_reason(*d)};
  }
  for (size_t i = 0; i < rules_.size(); ++i) {
    const auto* host = std::get_if<HostPattern>(&rules_[i].target);
    if (host && host->matches(*name) && rules_[i].ports.contains(port)) {
      return {.allowed = true, .rule = i, .rule_text = rules_[i].text, .reason = {}};
    }
  }
  return {.allowed = false, .rule = {}, .rule_text = {}, .reason = "no rule allows this name"};
}

Decision EgressPolicy::decide_name_any_port(std::string_view target) const {
  auto name = normalize_name(target);
  if (!name) {
    return {.allowed = false, .rule = {}, .rule_text = {}, .reason = "invalid name"};
  }
  if (const EgressRule* d = denied(*name, std::nullopt)) {
    return {.allowed = false, .rule = {}, .rule_text = {}, .reason = deny_reason(*d)};
  }
  for (size_t i = 0; i < rules_.size(); ++i) {
    const auto* host = std::get_if<HostPattern>(&rules_[i].target);
    if (host && host->matches(*name)) {
      return {.allowed = true, .rule = i, .rule_text = rules_[i].text, .reason = {}};
    }
  }
  return {.allowed = false, .rule = {}, .rule_text = {}, .reason = "no rule allows this name"};
}

std::optional<std::string> EgressPolicy::ask_rule(std::string_view target) const {
  auto name = normalize_name(target);
  if (!name || denied(*name, std::nullopt) != nullptr) {
    return std::nullopt;
  }
  for (const auto& a : asks_) {
    const auto* host = std::get_if<HostPattern>(&a.target);
    if (host && host->matches(*name)) {
      size_t colon = a.text.rfind(':');  // a host rule's only ':' starts its port
      return colon == std::string::npos ? *name : *name + a.text.substr(colon);
    }
  }
  if (ask_unlisted_) {
    return *name;
  }
  return std::nullopt;
}

Classification EgressPolicy::classify_dest(const IpAddr& addr) const {
  auto cls = classify(addr);
  if (cls.kind == Special::kNone && host_addrs_) {
    if (auto net = host_addrs_->find(addr)) {
      return {Special::kHost, *net};
    }
  }
  return cls;
}

Decision EgressPolicy::decide_address(const IpAddr& raw, uint16_t port) const {
  IpAddr addr = unmap(raw);
  auto cls = classify_dest(addr);
  if (const EgressRule* d = denied(addr, port)) {
    return {.allowed = false, .rule = {}, .rule_text = {}, .reason = deny_reason(*d)};
  }
  for (size_t i = 0; i < rules_.size(); ++i) {
    const auto* cidr = std::get_if<Cidr>(&rules_[i].target);
    if (!cidr || !cidr->contains(addr) || !rules_[i].ports.contains(port)) {
      continue;
    }
    if (cls.kind != Special::kNone && !names_special(*cidr, cls)) {
      continue;
    }
    return {.allowed = true, .rule = i, .rule_text = rules_[i].text, .reason = {}};
  }
  if (cls.kind != Special::kNone) {
    return {.allowed = false,
            .rule = {},
            .rule_text = {},
            .reason = fmt::format("{} address {} needs a CIDR rule naming it", to_string(cls.kind),
                                  addr.to_string())};
  }
  return {.allowed = false, .rule = {}, .rule_text = {}, .reason = "no rule allows this address"};
}

Decision EgressPolicy::check_resolved(const IpAddr& raw, uint16_t port) const {
  IpAddr addr = unmap(raw);
  if (classify_dest(addr).kind == Special::kNone) {
    return {.allowed = true, .rule = {}, .rule_text = {}, .reason = {}};
  }
  return decide_address(addr, port);
}

}  // namespace agentbox::policy
