// IP addresses for egress policy: strict and lenient literal parsing, CIDR, special-range checks.
//
// Two parsers, on purpose. `parse_ip` accepts only canonical text (dotted quad, RFC 4291) and is
// used for configuration. `parse_ip_literal` accepts every spelling a client library might turn
// into an address (inet_aton's 2130706433, 0x7f000001, 0177.0.0.1, 127.1; a bracketed IPv6), so
// that an alternate spelling is recognised as a literal address and never treated as a host name.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace agentbox::policy {

struct IpAddr {
  enum class Family : uint8_t { kV4, kV6 };
  Family family = Family::kV4;
  std::array<uint8_t, 16> bytes{};  // v4 uses bytes[0..3], network order

  [[nodiscard]] static IpAddr v4(uint32_t host_order);
  [[nodiscard]] static IpAddr v6(const std::array<uint8_t, 16>& b);
  [[nodiscard]] bool is_v4() const { return family == Family::kV4; }
  [[nodiscard]] uint32_t v4_value() const;  // host order; only for v4
  // The embedded IPv4 of ::ffff:a.b.c.d (v4-mapped), if any.
  [[nodiscard]] std::optional<IpAddr> unmapped_v4() const;
  [[nodiscard]] std::string to_string() const;
  bool operator==(const IpAddr&) const = default;
};

// Canonical text only: "1.2.3.4" (no leading zeros) or RFC 4291 IPv6 (no brackets, no zone).
[[nodiscard]] std::optional<IpAddr> parse_ip(std::string_view s);

// Every spelling a resolver/HTTP client may accept as an address literal: 1-4 dot-separated parts
// in decimal, octal (leading 0) or hex (0x), the last part filling the remaining bytes; an
// optional single trailing dot; bracketed or bare IPv6. nullopt if it is not an address.
[[nodiscard]] std::optional<IpAddr> parse_ip_literal(std::string_view s);

// True if `s` must be treated as an address literal rather than a name: it parses as one, or (as
// in the WHATWG URL host parser) its last label is numeric-looking ("0x1f", "08", "1e3" is not).
// Such strings are never resolved as names; if they don't parse they are simply invalid.
[[nodiscard]] bool looks_like_ip_literal(std::string_view s);

struct Cidr {
  IpAddr base;  // host bits cleared
  int prefix = 0;

  // "10.0.0.0/8", "1.2.3.4" (= /32), "fc00::/7", "::1" (= /128). Canonical addresses only.
  [[nodiscard]] static std::optional<Cidr> parse(std::string_view s);
  [[nodiscard]] bool contains(const IpAddr& a) const;
  [[nodiscard]] std::string to_string() const;
  bool operator==(const Cidr&) const = default;
};

// Address ranges that must never be reached just because a name resolved to them (SSRF and DNS
// rebinding): refused unless a CIDR rule names them explicitly.
enum class Special : uint8_t {
  kNone,         // a public unicast address
  kLoopback,     // 127/8, ::1
  kPrivate,      // RFC 1918
  kCgnat,        // 100.64/10
  kLinkLocal,    // 169.254/16, fe80::/10
  kMetadata,     // 169.254.169.254, 169.254.170.2, fd00:ec2::254
  kUla,          // fc00::/7
  kMulticast,    // 224/4, ff00::/8
  kUnspecified,  // 0/8, ::
  kBroadcast,    // 255.255.255.255
  kReserved,     // 240/4, 192.0.0/24, 198.18/15 (our synthetic pool), 192.0.2/24 etc., ::/96
  kHost,         // one of the host's own interface addresses (EgressPolicy, never classify())
};

[[nodiscard]] std::string_view to_string(Special s);

struct Classification {
  Special kind = Special::kNone;
  Cidr range;  // the range that made it special (for "does a rule name it explicitly")
};

// Classifies `a`; IPv6 forms that embed an IPv4 address (v4-mapped ::ffff:0:0/96, NAT64
// 64:ff9b::/96, 6to4 2002::/16) are classified by the embedded address.
[[nodiscard]] Classification classify(const IpAddr& a);

}  // namespace agentbox::policy
