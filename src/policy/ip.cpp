// IP literal parsing (strict and lenient), CIDR containment and special-range classification.
#include "agentbox/policy/ip.hpp"

#include <arpa/inet.h>
#include <fmt/core.h>

#include <cctype>
#include <charconv>
#include <span>
#include <vector>

namespace agentbox::policy {

IpAddr IpAddr::v4(uint32_t host_order) {
  IpAddr a;
  a.family = Family::kV4;
  a.bytes[0] = static_cast<uint8_t>(host_order >> 24);
  a.bytes[1] = static_cast<uint8_t>(host_order >> 16);
  a.bytes[2] = static_cast<uint8_t>(host_order >> 8);
  a.bytes[3] = static_cast<uint8_t>(host_order);
  return a;
}

IpAddr IpAddr::v6(const std::array<uint8_t, 16>& b) {
  IpAddr a;
  a.family = Family::kV6;
  a.bytes = b;
  return a;
}

uint32_t IpAddr::v4_value() const {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

std::optional<IpAddr> IpAddr::unmapped_v4() const {
  if (is_v4()) {
    return std::nullopt;
  }
  for (int i = 0; i < 10; ++i) {
    if (bytes[i] != 0) {
      return std::nullopt;
    }
  }
  if (bytes[10] != 0xff || bytes[11] != 0xff) {
    return std::nullopt;
  }
  return IpAddr::v4((uint32_t{bytes[12]} << 24) | (uint32_t{bytes[13]} << 16) |
                    (uint32_t{bytes[14]} << 8) | bytes[15]);
}

std::string IpAddr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<IpAddr> parse_ip(std::string_view s) {
  if (s.empty() || s.size() >= INET6_ADDRSTRLEN) {
    return std::nullopt;
  }
  std::string z(s);  // NUL-terminated copy; an embedded NUL makes the lengths disagree
  if (z.find('\0') != std::string::npos) {
    return std::nullopt;
  }
  IpAddr a;
  if (inet_pton(AF_INET, z.c_str(), a.bytes.data()) == 1) {
    a.family = IpAddr::Family::kV4;
    return a;
  }
  if (inet_pton(AF_INET6, z.c_str(), a.bytes.data()) == 1) {
    a.family = IpAddr::Family::kV6;
    return a;
  }
  return std::nullopt;
}

namespace {

// One inet_aton part: "0x1f", "017", "123", "0". nullopt on junk or > 32 bits.
std::optional<uint64_t> parse_part(std::string_view p) {
  int base = 10;
  if (p.size() >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    base = 16;
    p.remove_prefix(2);
    if (p.empty()) {
      return 0;  // "0x" is 0 to inet_aton and to the WHATWG parser
    }
  } else if (p.size() >= 2 && p[0] == '0') {
    base = 8;
    p.remove_prefix(1);
  }
  if (p.empty() || p.size() > 32) {
    return std::nullopt;
  }
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v, base);
  if (ec != std::errc() || ptr != p.data() + p.size() || v > 0xffffffffULL) {
    return std::nullopt;
  }
  return v;
}

std::vector<std::string_view> split_dots(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    parts.push_back(s.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return parts;
}

std::optional<IpAddr> parse_v4_lenient(std::string_view s) {
  if (!s.empty() && s.back() == '.') {
    s.remove_suffix(1);
  }
  if (s.empty()) {
    return std::nullopt;
  }
  auto parts = split_dots(s);
  if (parts.size() > 4) {
    return std::nullopt;
  }
  uint64_t value = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    auto v = parse_part(parts[i]);
    if (!v) {
      return std::nullopt;
    }
    bool last = i + 1 == parts.size();
    if (!last) {
      if (*v > 0xff) {
        return std::nullopt;
      }
      value |= *v << (8 * (3 - i));
    } else {
      uint64_t room = 8 * (4 - i);  // bits the last part may fill
      if (room < 64 && *v >= (uint64_t{1} << room)) {
        return std::nullopt;
      }
      value |= *v;
    }
  }
  return IpAddr::v4(static_cast<uint32_t>(value));
}

}  // namespace

std::optional<IpAddr> parse_ip_literal(std::string_view s) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') {
    auto a = parse_ip(s.substr(1, s.size() - 2));
    if (a && !a->is_v4()) {
      return a;
    }
    return std::nullopt;
  }
  if (s.find(':') != std::string_view::npos) {
    auto a = parse_ip(s);
    return a && !a->is_v4() ? a : std::nullopt;
  }
  return parse_v4_lenient(s);
}

bool looks_like_ip_literal(std::string_view s) {
  if (parse_ip_literal(s)) {
    return true;
  }
  if (s.find(':') != std::string_view::npos || (!s.empty() && s.front() == '[')) {
    return true;  // a name never contains ':' or '['; treat as a (bad) literal
  }
  if (!s.empty() && s.back() == '.') {
    s.remove_suffix(1);
  }
  auto last = s.substr(s.rfind('.') == std::string_view::npos ? 0 : s.rfind('.') + 1);
  if (last.empty()) {
    return false;
  }
  // WHATWG "ends in a number": all decimal digits, or 0x followed by hex digits.
  auto all = [](std::string_view v, auto pred) {
    for (char c : v) {
      if (!pred(static_cast<unsigned char>(c))) {
        return false;
      }
    }
    return true;
  };
  if (all(last, [](unsigned char c) { return std::isdigit(c) != 0; })) {
    return true;
  }
  return last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') &&
         all(last.substr(2), [](unsigned char c) { return std::isxdigit(c) != 0; });
}

std::optional<Cidr> Cidr::parse(std::string_view s) {
  auto slash = s.find('/');
  auto addr = parse_ip(s.substr(0, slash));
  if (!addr) {
    return std::nullopt;
  }
  int max = addr->is_v4() ? 32 : 128;
  int prefix = max;
  if (slash != std::string_view::npos) {
    auto p = s.substr(slash + 1);
    if (p.empty() || p.size() > 3 || (p.size() > 1 && p[0] == '0')) {
      return std::nullopt;
    }
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc() || ptr != p.data() + p.size() || prefix < 0 || prefix > max) {
      return std::nullopt;
    }
  }
  Cidr c{*addr, prefix};
  for (int bit = prefix; bit < max; ++bit) {  // clear host bits
    c.base.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  return c;
}

bool Cidr::contains(const IpAddr& a) const {
  if (a.family != base.family) {
    return false;
  }
  for (int bit = 0; bit < prefix; ++bit) {
    uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
    if ((a.bytes[bit / 8] & mask) != (base.bytes[bit / 8] & mask)) {
      return false;
    }
  }
  return true;
}

std::string Cidr::to_string() const {
  return fmt::format("{}/{}", base.to_string(), prefix);
}

std::string_view to_string(Special s) {
  switch (s) {
    case Special::kNone:
      return "public";
    case Special::kLoopback:
      return "loopback";
    case Special::kPrivate:
      return "private";
    case Special::kCgnat:
      return "cgnat";
    case Special::kLinkLocal:
      return "link-local";
    case Special::kMetadata:
      return "metadata";
    case Special::kUla:
      return "ula";
    case Special::kMulticast:
      return "multicast";
    case Special::kUnspecified:
      return "unspecified";
    case Special::kBroadcast:
      return "broadcast";
    case Special::kReserved:
      return "reserved";
    case Special::kHost:
      return "host's own";
  }
  return "?";
}

namespace {

struct Range {
  const char* cidr;
  Special kind;
};

// Most specific first: the first containing range wins.
constexpr Range kV4Ranges[] = {
    {"169.254.169.254/32", Special::kMetadata},  {"169.254.170.2/32", Special::kMetadata},
    {"255.255.255.255/32", Special::kBroadcast}, {"0.0.0.0/8", Special::kUnspecified},
    {"127.0.0.0/8", Special::kLoopback},         {"10.0.0.0/8", Special::kPrivate},
    {"172.16.0.0/12", Special::kPrivate},        {"192.168.0.0/16", Special::kPrivate},
    {"100.64.0.0/10", Special::kCgnat},          {"169.254.0.0/16", Special::kLinkLocal},
    {"224.0.0.0/4", Special::kMulticast},        {"240.0.0.0/4", Special::kReserved},
    {"192.0.0.0/24", Special::kReserved},        {"192.0.2.0/24", Special::kReserved},
    {"198.18.0.0/15", Special::kReserved},       {"198.51.100.0/24", Special::kReserved},
    {"203.0.113.0/24", Special::kReserved},
};
constexpr Range kV6Ranges[] = {
    {"fd00:ec2::254/128", Special::kMetadata},
    {"::/128", Special::kUnspecified},
    {"::1/128", Special::kLoopback},
    {"::/96", Special::kReserved},
    {"fc00::/7", Special::kUla},
    {"fe80::/10", Special::kLinkLocal},
    {"fec0::/10", Special::kReserved},
    {"ff00::/8", Special::kMulticast},
    {"2001:db8::/32", Special::kReserved},
    {"100::/64", Special::kReserved},
};

Classification classify_in(const IpAddr& a, std::span<const Range> ranges) {
  for (const auto& r : ranges) {
    auto c = Cidr::parse(r.cidr);
    if (c && c->contains(a)) {
      return {r.kind, *c};
    }
  }
  return {};
}

}  // namespace

Classification classify(const IpAddr& a) {
  if (a.is_v4()) {
    return classify_in(a, kV4Ranges);
  }
  auto embedded = [&](int off) {
    return IpAddr::v4((uint32_t{a.bytes[off]} << 24) | (uint32_t{a.bytes[off + 1]} << 16) |
                      (uint32_t{a.bytes[off + 2]} << 8) | a.bytes[off + 3]);
  };
  if (auto v4 = a.unmapped_v4()) {
    return classify(*v4);
  }
  if (Cidr::parse("64:ff9b::/96")->contains(a)) {
    return classify(embedded(12));
  }
  if (Cidr::parse("2002::/16")->contains(a)) {
    return classify(embedded(2));
  }
  return classify_in(a, kV6Ranges);
}

}  // namespace agentbox::policy
