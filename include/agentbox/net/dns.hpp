// DNS at the gateway: the box's only resolver. Answers from policy, never queries upstream.
//
// Theory of operation:
//   1. parse_dns_query reads one question (bounded, backward-only compression, loop-safe).
//   2. The name is checked against the EgressPolicy (any port: the port is not known yet).
//   3. Allowed names get an A record with a synthetic address from 198.18.0.0/15 that maps back
//      to the name for the whole session (SyntheticPool); the real resolution happens in the
//      supervisor when the box connects, so the TCP translator always knows the name.
//   4. AAAA and other harmless types for allowed names: NOERROR with no answer (IPv6 is off in
//      the box). TXT, NULL, SVCB, HTTPS, ANY, AXFR/IXFR: REFUSED for every name (DNS tunnelling
//      channels; refusing HTTPS/SVCB also keeps ECH away so SNI stays readable).
//   5. Names not allowed (and invalid names): NXDOMAIN. Every query is a "dns.query" audit event.
//   6. Approvals: a name the policy says to ask about (EgressPolicy::ask_rule) gets no reply
//      while a person decides (policy::Approver). Queries for one name share one question; at
//      most kMaxHeld queries wait (past that: SERVFAIL). The answer releases every held query:
//      allowed as in 3/4, or NXDOMAIN. "Once" also lets the next connection to the name through
//      (OnceGrants). Without an approver, or with no ask rule, nothing here changes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/net/wire.hpp"
#include "agentbox/policy/approval.hpp"
#include "agentbox/policy/egress.hpp"

namespace agentbox::net {

namespace dnstype {
inline constexpr uint16_t kA = 1;
inline constexpr uint16_t kNull = 10;
inline constexpr uint16_t kTxt = 16;
inline constexpr uint16_t kAaaa = 28;
inline constexpr uint16_t kSvcb = 64;
inline constexpr uint16_t kHttps = 65;
inline constexpr uint16_t kIxfr = 251;
inline constexpr uint16_t kAxfr = 252;
inline constexpr uint16_t kAny = 255;
}  // namespace dnstype

namespace dnsrcode {
inline constexpr uint8_t kNoError = 0;
inline constexpr uint8_t kFormErr = 1;
inline constexpr uint8_t kServFail = 2;
inline constexpr uint8_t kNxDomain = 3;
inline constexpr uint8_t kNotImp = 4;
inline constexpr uint8_t kRefused = 5;
}  // namespace dnsrcode

struct DnsQuery {
  uint16_t id = 0;
  uint16_t flags = 0;
  uint16_t qdcount = 0;
  std::vector<std::string> labels;  // raw label bytes, case preserved
  std::string name;                 // labels joined by '.', for policy and audit
  bool name_ok = true;              // false if a label holds '.' or NUL (never a valid name)
  uint16_t qtype = 0;
  uint16_t qclass = 0;
};

// nullopt if `msg` is not a parseable query (responses, truncated, bad names): no reply at all.
// A query with qdcount != 1 or a non-zero opcode parses (header only) so it can be answered with
// FORMERR/NOTIMP.
[[nodiscard]] std::optional<DnsQuery> parse_dns_query(Bytes msg);

// Bidirectional name <-> synthetic address map, stable for the session. Bounded: when full,
// new names get no address (SERVFAIL) rather than evicting (an evicted address could be handed
// to another name while a connection to the old one is still being made).
class SyntheticPool {
 public:
  explicit SyntheticPool(Ip4 base = ip4(198, 18, 0, 0), int prefix = 15, size_t max = 65536);
  // The address for `name` (normalized), assigning one if needed.
  [[nodiscard]] std::optional<Ip4> assign(const std::string& name);
  [[nodiscard]] std::optional<std::string> name_of(Ip4 addr) const;
  [[nodiscard]] bool contains(Ip4 addr) const { return (addr & mask_) == base_; }
  [[nodiscard]] size_t size() const { return by_name_.size(); }

 private:
  Ip4 base_;
  Ip4 mask_;
  size_t capacity_;
  Ip4 next_;
  std::unordered_map<std::string, Ip4> by_name_;
  std::unordered_map<Ip4, std::string> by_addr_;
};

// Names a person admitted once (`agentbox approve ... once`): the next connection to the name
// within kWindow is admitted, then the grant is gone. Bounded (kMax names; the oldest goes).
class OnceGrants {
 public:
  static constexpr std::chrono::seconds kWindow{30};
  static constexpr size_t kMax = 256;
  void grant(const std::string& name);
  // True (and the grant used up) when `name` holds an unexpired grant.
  [[nodiscard]] bool take(const std::string& name);
  [[nodiscard]] size_t size() const { return until_.size(); }

 private:
  std::map<std::string, std::chrono::steady_clock::time_point> until_;
};

// Where a held query's reply goes (the stack frames it).
struct ReplyTo {
  Mac mac{};
  Ip4 ip = 0;
  uint16_t port = 0;
};

class DnsResponder {
 public:
  static constexpr size_t kMaxHeld = 64;  // queries waiting for a person, all names together
  using Send = std::function<void(const ReplyTo&, Bytes reply)>;
  // `policy` is read on every query (a runtime policy change applies to the next query).
  DnsResponder(const policy::EgressPolicy& policy, SyntheticPool& pool, audit::Sink& audit,
               uint32_t ttl = 60)
      : policy_(policy), pool_(pool), audit_(audit), ttl_(ttl) {}
  // The reply message for `query`, or empty if there is to be no reply.
  // `to` null: nothing is held (a name to ask about is denied).
  [[nodiscard]] std::vector<std::byte> answer(Bytes query, const ReplyTo* to = nullptr);
  // Ask `approver` about names the policy says to ask about; `send` delivers released replies.
  void use_approver(policy::Approver* approver, OnceGrants* once, Send send);
  [[nodiscard]] size_t held() const { return held_count_; }

 private:
  struct Held {
    DnsQuery query;
    ReplyTo to;
  };
  std::vector<std::byte> reply_allowed(const DnsQuery& q, const std::string& name,
                                       audit::Event& ev);
  std::vector<std::byte> hold(const DnsQuery& q, const std::string& name, std::string rule,
                              const ReplyTo& to, audit::Event& ev);
  void release(const std::string& name, policy::Answer a);

  const policy::EgressPolicy& policy_;
  SyntheticPool& pool_;
  audit::Sink& audit_;
  uint32_t ttl_;
  policy::Approver* approver_ = nullptr;
  OnceGrants* once_ = nullptr;
  Send send_;
  std::map<std::string, std::vector<Held>> held_;  // by name
  size_t held_count_ = 0;
  // Answers may come after this responder is gone (the session ending): they check this first.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace agentbox::net
