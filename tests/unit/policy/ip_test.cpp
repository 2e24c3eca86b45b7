// Address literals in every spelling, CIDR containment, special-range classification.
#include "agentbox/policy/ip.hpp"

#include <gtest/gtest.h>

namespace agentbox::policy {
namespace {

IpAddr v4(const char* s) {
  auto a = parse_ip(s);
  EXPECT_TRUE(a) << s;
  return a.value_or(IpAddr{});
}

TEST(Ip, StrictParserAcceptsOnlyCanonicalText) {
  EXPECT_EQ(parse_ip("127.0.0.1"), IpAddr::v4(0x7f000001));
  EXPECT_TRUE(parse_ip("::1"));
  EXPECT_FALSE(parse_ip("127.1"));
  EXPECT_FALSE(parse_ip("0177.0.0.1"));
  EXPECT_FALSE(parse_ip("2130706433"));
  EXPECT_FALSE(parse_ip("[::1]"));
  EXPECT_FALSE(parse_ip(std::string_view("1.2.3.4\0x", 9)));
  EXPECT_FALSE(parse_ip(""));
}

TEST(Ip, AlternateSpellingsAreLiterals) {
  const auto lo = IpAddr::v4(0x7f000001);
  for (const char* s : {"127.0.0.1", "2130706433", "0x7f000001", "0X7F000001", "0177.0.0.1",
                        "127.1", "127.0.1", "0x7f.1", "017700000001", "127.0.0.1."}) {
    EXPECT_EQ(parse_ip_literal(s), lo) << s;
    EXPECT_TRUE(looks_like_ip_literal(s)) << s;
  }
  EXPECT_EQ(parse_ip_literal("169.254.43518"), IpAddr::v4(0xa9fea9fe));  // metadata
  EXPECT_EQ(parse_ip_literal("0"), IpAddr::v4(0));
  EXPECT_EQ(parse_ip_literal("[::ffff:127.0.0.1]")->unmapped_v4(), lo);
  EXPECT_FALSE(parse_ip_literal("256.0.0.1"));
  EXPECT_FALSE(parse_ip_literal("1.2.3.4.5"));
  EXPECT_FALSE(parse_ip_literal("4294967296"));
  EXPECT_FALSE(parse_ip_literal("1.2.65536"));
  EXPECT_FALSE(parse_ip_literal("08.0.0.1"));  // bad octal
  EXPECT_FALSE(parse_ip_literal("example.com"));
}

TEST(Ip, NumericLastLabelIsNeverAName) {
  EXPECT_TRUE(looks_like_ip_literal("foo.123"));
  EXPECT_TRUE(looks_like_ip_literal("08.0.0.1"));
  EXPECT_TRUE(looks_like_ip_literal("a.0x1F"));
  EXPECT_TRUE(looks_like_ip_literal("::1"));
  EXPECT_FALSE(looks_like_ip_literal("example.com"));
  EXPECT_FALSE(looks_like_ip_literal("123.example"));
  EXPECT_FALSE(looks_like_ip_literal("1e3"));
}

TEST(Ip, Cidr) {
  auto c = Cidr::parse("10.1.2.3/8");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->to_string(), "10.0.0.0/8");
  EXPECT_TRUE(c->contains(v4("10.255.0.1")));
  EXPECT_FALSE(c->contains(v4("11.0.0.1")));
  EXPECT_TRUE(Cidr::parse("0.0.0.0/0")->contains(v4("8.8.8.8")));
  EXPECT_EQ(Cidr::parse("1.2.3.4")->prefix, 32);
  EXPECT_TRUE(Cidr::parse("fc00::/7")->contains(*parse_ip("fd12::1")));
  EXPECT_FALSE(Cidr::parse("fc00::/7")->contains(v4("10.0.0.1")));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/33"));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/"));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/08"));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/8x"));
}

TEST(Ip, Classify) {
  struct Case {
    const char* addr;
    Special kind;
  };
  for (auto [addr, kind] : std::initializer_list<Case>{
           {"127.0.0.1", Special::kLoopback},
           {"10.0.0.1", Special::kPrivate},
           {"172.31.255.255", Special::kPrivate},
           {"172.32.0.1", Special::kNone},
           {"192.168.1.1", Special::kPrivate},
           {"100.64.0.1", Special::kCgnat},
           {"100.128.0.1", Special::kNone},
           {"169.254.1.1", Special::kLinkLocal},
           {"169.254.169.254", Special::kMetadata},
           {"169.254.170.2", Special::kMetadata},
           {"224.0.0.1", Special::kMulticast},
           {"0.0.0.0", Special::kUnspecified},
           {"255.255.255.255", Special::kBroadcast},
           {"198.18.0.5", Special::kReserved},
           {"8.8.8.8", Special::kNone},
           {"::1", Special::kLoopback},
           {"::", Special::kUnspecified},
           {"fd00:ec2::254", Special::kMetadata},
           {"fd12::1", Special::kUla},
           {"fe80::1", Special::kLinkLocal},
           {"ff02::1", Special::kMulticast},
           {"::ffff:127.0.0.1", Special::kLoopback},
           {"::ffff:169.254.169.254", Special::kMetadata},
           {"64:ff9b::a9fe:a9fe", Special::kMetadata},
           {"2002:a00:1::", Special::kPrivate},
           {"2606:4700::1111", Special::kNone},
       }) {
    auto a = parse_ip(addr);
    ASSERT_TRUE(a) << addr;
    EXPECT_EQ(classify(*a).kind, kind) << addr << " -> " << to_string(classify(*a).kind);
  }
}

}  // namespace
}  // namespace agentbox::policy
