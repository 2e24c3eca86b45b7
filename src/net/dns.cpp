// DNS query parsing, the synthetic address pool and the policy-driven responder.
#include "agentbox/net/dns.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <utility>

namespace agentbox::net {

namespace {

constexpr size_t kMaxWireName = 255;
constexpr int kMaxPointers = 16;

// Reads a (possibly compressed) name starting at r's position. Pointers must point strictly
// backwards and are capped, so a loop cannot spin; total length is capped at 255 bytes.
bool read_name(Bytes msg, Reader& r, DnsQuery& q) {
  size_t wire_len = 0;
  int jumps = 0;
  Reader cur = r;
  size_t cur_start = r.pos();
  bool jumped = false;
  while (true) {
    size_t at = cur.pos();
    uint8_t len = cur.u8();
    if (!cur.ok()) {
      return false;
    }
    if ((len & 0xc0) == 0xc0) {
      uint16_t off = static_cast<uint16_t>(((len & 0x3fu) << 8) | cur.u8());
      if (!cur.ok() || ++jumps > kMaxPointers || off >= cur_start || off >= at) {
        return false;
      }
      if (!jumped) {
        r = cur;  // the name in the record ends after the first pointer
        jumped = true;
      }
      cur = Reader(msg);
      cur.skip(off);
      cur_start = off;
      continue;
    }
    if ((len & 0xc0) != 0) {
      return false;  // 0x40/0x80 label types are obsolete
    }
    wire_len += 1 + len;
    if (wire_len > kMaxWireName) {
      return false;
    }
    if (len == 0) {
      break;
    }
    auto label = cur.bytes(len);
    if (!cur.ok()) {
      return false;
    }
    std::string l(reinterpret_cast<const char*>(label.data()), label.size());
    if (l.find_first_of(std::string_view(".\0", 2)) != std::string::npos) {
      q.name_ok = false;
    }
    q.name += (q.labels.empty() ? "" : ".") + l;
    q.labels.push_back(std::move(l));
  }
  if (!jumped) {
    r = cur;
  }
  return true;
}

std::string_view qtype_name(uint16_t t) {
  switch (t) {
    case dnstype::kA:
      return "A";
    case dnstype::kAaaa:
      return "AAAA";
    case dnstype::kTxt:
      return "TXT";
    case dnstype::kNull:
      return "NULL";
    case dnstype::kSvcb:
      return "SVCB";
    case dnstype::kHttps:
      return "HTTPS";
    case dnstype::kAny:
      return "ANY";
    case dnstype::kAxfr:
      return "AXFR";
    case dnstype::kIxfr:
      return "IXFR";
    case 5:
      return "CNAME";
    case 12:
      return "PTR";
    case 15:
      return "MX";
    case 33:
      return "SRV";
    default:
      return "other";
  }
}

bool refused_type(uint16_t t) {
  return t == dnstype::kTxt || t == dnstype::kNull || t == dnstype::kSvcb || t == dnstype::kHttps ||
         t == dnstype::kAny || t == dnstype::kAxfr || t == dnstype::kIxfr;
}

void put16(std::vector<std::byte>& out, uint16_t v) {
  out.push_back(std::byte{static_cast<uint8_t>(v >> 8)});
  out.push_back(std::byte{static_cast<uint8_t>(v)});
}

void put32(std::vector<std::byte>& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}

// Header + the question as received (labels re-encoded, case preserved: 0x20 randomization).
std::vector<std::byte> reply_head(const DnsQuery& q, uint8_t rcode, uint16_t ancount,
                                  bool with_question) {
  std::vector<std::byte> out;
  out.reserve(300);
  put16(out, q.id);
  // QR, opcode copied, AA, RD copied, RA, rcode.
  uint16_t flags = static_cast<uint16_t>(0x8000 | (q.flags & 0x7800) | 0x0400 | (q.flags & 0x0100) |
                                         0x0080 | rcode);
  put16(out, flags);
  put16(out, with_question ? 1 : 0);
  put16(out, ancount);
  put16(out, 0);
  put16(out, 0);
  if (with_question) {
    for (const auto& l : q.labels) {
      out.push_back(std::byte{static_cast<uint8_t>(l.size())});
      for (char c : l) {
        out.push_back(std::byte{static_cast<uint8_t>(c)});
      }
    }
    out.push_back(std::byte{0});
    put16(out, q.qtype);
    put16(out, q.qclass);
  }
  return out;
}

}  // namespace

std::optional<DnsQuery> parse_dns_query(Bytes msg) {
  Reader r(msg);
  DnsQuery q;
  q.id = r.u16();
  q.flags = r.u16();
  q.qdcount = r.u16();
  r.skip(6);  // an/ns/ar counts: EDNS OPT records in the additional section are ignored
  if (!r.ok() || (q.flags & 0x8000) != 0) {
    return std::nullopt;  // truncated, or a response
  }
  if (q.qdcount != 1 || ((q.flags >> 11) & 0xf) != 0) {
    return q;  // answered with FORMERR / NOTIMP
  }
  if (!read_name(msg, r, q)) {
    return std::nullopt;
  }
  q.qtype = r.u16();
  q.qclass = r.u16();
  if (!r.ok()) {
    return std::nullopt;
  }
  return q;
}

SyntheticPool::SyntheticPool(Ip4 base, int prefix, size_t max)
    : base_(base), mask_(prefix == 0 ? 0 : ~Ip4{0} << (32 - prefix)), next_(base + 1) {
  size_t span = prefix >= 32 ? 1 : (size_t{1} << (32 - prefix)) - 2;  // no network/last address
  capacity_ = std::min(max, span);
}

std::optional<Ip4> SyntheticPool::assign(const std::string& name) {
  if (auto it = by_name_.find(name); it != by_name_.end()) {
    return it->second;
  }
  if (by_name_.size() >= capacity_) {
    return std::nullopt;
  }
  Ip4 a = next_++;
  by_name_.emplace(name, a);
  by_addr_.emplace(a, name);
  return a;
}

std::optional<std::string> SyntheticPool::name_of(Ip4 addr) const {
  auto it = by_addr_.find(addr);
  if (it == by_addr_.end()) {
    return std::nullopt;
  }
  return it->second;
}

void OnceGrants::grant(const std::string& name) {
  auto now = std::chrono::steady_clock::now();
  std::erase_if(until_, [&](const auto& g) { return g.second <= now; });
  if (until_.size() >= kMax && until_.find(name) == until_.end()) {
    auto oldest = std::min_element(until_.begin(), until_.end(), [](const auto& a, const auto& b) {
      return a.second < b.second;
    });
    until_.erase(oldest);
  }
  until_[name] = now + kWindow;
}

bool OnceGrants::take(const std::string& name) {
  auto it = until_.find(name);
  if (it == until_.end()) {
    return false;
  }
  bool live = it->second > std::chrono::steady_clock::now();
  until_.erase(it);
  return live;
}

void DnsResponder::use_approver(policy::Approver* approver, OnceGrants* once, Send send) {
  approver_ = approver;
  once_ = once;
  send_ = std::move(send);
}

std::vector<std::byte> DnsResponder::answer(Bytes query, const ReplyTo* to) {
  auto q = parse_dns_query(query);
  if (!q) {
    audit_.emit(audit::Event("dns.query")
                    .boolean("malformed", true)
                    .num("bytes", static_cast<int64_t>(query.size())));
    return {};
  }
  if (q->qdcount != 1) {
    return reply_head(*q, dnsrcode::kFormErr, 0, false);
  }
  if (((q->flags >> 11) & 0xf) != 0) {
    return reply_head(*q, dnsrcode::kNotImp, 0, false);
  }
  auto ev = audit::Event("dns.query");
  ev.str("name", q->name).str("qtype", qtype_name(q->qtype)).num("qtype_num", q->qtype);
  auto finish = [&](uint8_t rcode, std::string_view result) {
    ev.str("result", result);
    audit_.emit(ev);
    return reply_head(*q, rcode, 0, true);
  };
  // A box can repeat a refused or denied query at will (~9 MB/s of lines): the sink writes the
  // first of each name and type in a second and counts the rest (audit.hpp, Event::coalesce).
  std::string key = fmt::format("{}/{}", q->name, q->qtype);
  if (q->qclass != 1 || refused_type(q->qtype)) {
    ev.coalesce(key);
    return finish(dnsrcode::kRefused, "refused");
  }
  auto name = q->name_ok ? policy::normalize_name(q->name) : std::nullopt;
  auto decision = name ? policy_.decide_name_any_port(*name) : policy::Decision{};
  if (name && !decision.allowed && approver_ != nullptr && to != nullptr &&
      policy_.asks_anything()) {
    if (auto rule = policy_.ask_rule(*name)) {
      return hold(*q, *name, std::move(*rule), *to, ev);
    }
  }
  if (!name || !decision.allowed) {
    ev.str("reason", name ? decision.reason : "invalid name").coalesce(key);
    return finish(dnsrcode::kNxDomain, "denied");
  }
  ev.str("rule", decision.rule_text);
  return reply_allowed(*q, *name, ev);
}

std::vector<std::byte> DnsResponder::reply_allowed(const DnsQuery& q, const std::string& name,
                                                   audit::Event& ev) {
  auto finish = [&](uint8_t rcode, std::string_view result) {
    ev.str("result", result);
    audit_.emit(ev);
    return reply_head(q, rcode, 0, true);
  };
  if (q.qtype != dnstype::kA) {
    return finish(dnsrcode::kNoError, "empty");
  }
  auto addr = pool_.assign(name);
  if (!addr) {
    return finish(dnsrcode::kServFail, "pool exhausted");
  }
  ev.str("answer", ip4_to_string(*addr));
  audit_.emit(ev.str("result", "allowed"));
  auto out = reply_head(q, dnsrcode::kNoError, 1, true);
  put16(out, 0xc00c);  // pointer to the question name at offset 12
  put16(out, dnstype::kA);
  put16(out, 1);
  put32(out, ttl_);
  put16(out, 4);
  put32(out, *addr);
  return out;
}

// No reply now: the query waits for the person's answer (release). The first query for a name
// asks; later ones (AAAA beside A, the resolver's retries) join it.
std::vector<std::byte> DnsResponder::hold(const DnsQuery& q, const std::string& name,
                                          std::string rule, const ReplyTo& to, audit::Event& ev) {
  if (held_count_ >= kMaxHeld) {
    ev.str("reason", "too many queries wait for a person").str("result", "servfail");
    audit_.emit(ev.coalesce(fmt::format("held/{}", name)));
    return reply_head(q, dnsrcode::kServFail, 0, true);
  }
  ++held_count_;
  auto [it, first] = held_.try_emplace(name);
  it->second.push_back({q, to});
  audit_.emit(ev.str("result", "held").str("ask", rule));
  if (first) {
    std::weak_ptr<bool> alive = alive_;
    approver_->ask({.kind = policy::ApprovalKind::host, .subject = name, .detail = std::move(rule)},
                   [this, alive, name](policy::Answer a) {
                     if (alive.lock()) {
                       release(name, a);
                     }
                   });
  }
  return {};
}

void DnsResponder::release(const std::string& name, policy::Answer a) {
  auto it = held_.find(name);
  if (it == held_.end()) {
    return;
  }
  std::vector<Held> waiting = std::move(it->second);
  held_.erase(it);
  held_count_ -= waiting.size();
  if (a == policy::Answer::allow_once && once_ != nullptr) {
    once_->grant(name);
  }
  for (const Held& h : waiting) {
    auto ev = audit::Event("dns.query");
    ev.str("name", h.query.name)
        .str("qtype", qtype_name(h.query.qtype))
        .num("qtype_num", h.query.qtype)
        .str("approval", policy::to_string(a));
    std::vector<std::byte> reply;
    if (policy::allows(a)) {
      reply = reply_allowed(h.query, name, ev.str("rule", "approved"));
    } else {
      audit_.emit(ev.str("reason", "not approved").str("result", "denied"));
      reply = reply_head(h.query, dnsrcode::kNxDomain, 0, true);
    }
    if (send_) {
      send_(h.to, reply);
    }
  }
}

}  // namespace agentbox::net
