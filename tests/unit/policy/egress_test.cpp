// Rule grammar and the allow/deny decision, including SSRF/rebinding special ranges.
#include "agentbox/policy/egress.hpp"

#include <gtest/gtest.h>

#include <memory>

namespace agentbox::policy {
namespace {

EgressPolicy make(std::vector<std::string> rules) {
  auto p = EgressPolicy::parse(rules);
  EXPECT_TRUE(p) << (p ? "" : p.error().message());
  return p ? *p : EgressPolicy{};
}

TEST(Egress, DenyByDefault) {
  EgressPolicy p;
  auto d = p.decide("example.com", 443);
  EXPECT_FALSE(d.allowed);
  EXPECT_FALSE(d.reason.empty());
}

TEST(Egress, DefaultPortsAre443And80) {
  auto p = make({"api.github.com"});
  EXPECT_TRUE(p.decide("api.github.com", 443).allowed);
  EXPECT_TRUE(p.decide("API.GITHUB.COM.", 80).allowed);
  EXPECT_FALSE(p.decide("api.github.com", 22).allowed);
  EXPECT_FALSE(p.decide("github.com", 443).allowed);
  EXPECT_EQ(p.decide("api.github.com", 443).rule_text, "api.github.com");
  EXPECT_EQ(p.decide("api.github.com", 443).rule, 0u);
}

TEST(Egress, AUrlIsRefusedWithTheHostItMeant) {
  for (const char* url :
       {"http://x.example.com", "https://x.example.com/path?q", "git://x.example.com:9418"}) {
    auto r = EgressRule::parse(url);
    ASSERT_FALSE(r) << url;
    EXPECT_NE(r.error().message().find("a rule names a host, not a URL"), std::string::npos);
    EXPECT_NE(r.error().message().find("drop the scheme and path, `x.example.com"),
              std::string::npos)
        << r.error().message();
  }
}

TEST(Egress, ExplicitAndAnyPort) {
  auto p = make({"example.com:8443", "*.npmjs.org:*"});
  EXPECT_TRUE(p.decide("example.com", 8443).allowed);
  EXPECT_FALSE(p.decide("example.com", 443).allowed);
  EXPECT_TRUE(p.decide("registry.npmjs.org", 1).allowed);
  EXPECT_FALSE(p.decide("npmjs.org", 443).allowed);
}

TEST(Egress, NamesNeverMatchCidrsAndLiteralsNeverMatchNames) {
  auto p = make({"10.0.0.0/8:5432", "localhost"});
  EXPECT_TRUE(p.decide("10.1.2.3", 5432).allowed);
  EXPECT_FALSE(p.decide("10.1.2.3", 443).allowed);
  EXPECT_FALSE(p.decide("127.0.0.1", 443).allowed);
  EXPECT_TRUE(p.decide("localhost", 443).allowed);  // the name; its address is checked later
}

TEST(Egress, AlternateSpellingsCannotBypass) {
  auto p = make({"*.example.com"});
  for (const char* s : {"2130706433", "0x7f000001", "0177.0.0.1", "127.1", "169.254.169.254",
                        "[::ffff:127.0.0.1]", "a.example.com.127", "0x7f.1"}) {
    auto d = p.decide(s, 443);
    EXPECT_FALSE(d.allowed) << s;
  }
  auto d = p.decide("0x7f000001", 80);
  EXPECT_NE(d.reason.find("loopback"), std::string::npos) << d.reason;
}

TEST(Egress, SpecialRangesNeedARuleNamingThem) {
  auto wide = make({"0.0.0.0/0:*", "[::/0]:*"});
  EXPECT_TRUE(wide.decide("8.8.8.8", 53).allowed);
  EXPECT_FALSE(wide.decide("127.0.0.1", 80).allowed);
  EXPECT_FALSE(wide.decide("169.254.169.254", 80).allowed);
  EXPECT_FALSE(wide.decide("10.0.0.1", 80).allowed);
  EXPECT_FALSE(wide.decide("::1", 80).allowed);
  EXPECT_FALSE(wide.decide("::ffff:10.0.0.1", 80).allowed);
  auto named = make({"127.0.0.1/32:8080", "10.0.0.0/8:*"});
  EXPECT_TRUE(named.decide("127.0.0.1", 8080).allowed);
  EXPECT_TRUE(named.decide("2130706433", 8080).allowed);
  EXPECT_TRUE(named.decide("[::ffff:127.0.0.1]", 8080).allowed);
  EXPECT_FALSE(named.decide("127.0.0.2", 8080).allowed);
  EXPECT_TRUE(named.decide("10.9.9.9", 1).allowed);
  // 10/8 names the private range, not the metadata address inside 169.254/16.
  EXPECT_FALSE(named.decide("169.254.169.254", 80).allowed);
}

TEST(Egress, CheckResolvedGuardsRebinding) {
  auto p = make({"example.com", "127.0.0.1:8080"});
  ASSERT_TRUE(p.decide("example.com", 443).allowed);
  EXPECT_TRUE(p.check_resolved(*parse_ip("93.184.216.34"), 443).allowed);
  EXPECT_FALSE(p.check_resolved(*parse_ip("127.0.0.1"), 443).allowed);
  EXPECT_FALSE(p.check_resolved(*parse_ip("169.254.169.254"), 443).allowed);
  EXPECT_FALSE(p.check_resolved(*parse_ip("::ffff:192.168.0.1"), 443).allowed);
  EXPECT_FALSE(p.check_resolved(*parse_ip("fd00:ec2::254"), 443).allowed);
  EXPECT_TRUE(p.check_resolved(*parse_ip("127.0.0.1"), 8080).allowed);
}

// The host's own addresses (issue 14 item 7): public by range, refused like loopback unless a
// CIDR rule no wider than the interface's network names them; the set is read live.
TEST(Egress, HostsOwnAddressesNeedARuleNamingThem) {
  auto addrs = std::make_shared<HostAddrs>();
  auto p = make({"0.0.0.0/0:*", "[::/0]:*", "host.example.com"});
  EXPECT_TRUE(p.check_resolved(*parse_ip("93.184.215.7"), 443).allowed);
  p.use_host_addrs(addrs);
  addrs->replace({{.addr = *parse_ip("93.184.215.7"), .net = *Cidr::parse("93.184.215.0/24")},
                  {.addr = *parse_ip("2a00:1450::7"), .net = *Cidr::parse("2a00:1450::/64")}});
  for (const char* a : {"93.184.215.7", "::ffff:93.184.215.7", "2a00:1450::7"}) {
    auto d = p.check_resolved(*parse_ip(a), 443);
    EXPECT_FALSE(d.allowed) << a;
    EXPECT_NE(d.reason.find("host's own address"), std::string::npos) << d.reason;
    EXPECT_FALSE(p.decide_address(*parse_ip(a), 443).allowed) << a;  // 0.0.0.0/0 is not naming
  }
  EXPECT_TRUE(p.check_resolved(*parse_ip("93.184.215.8"), 443).allowed);  // a neighbour
  auto named = make({"93.184.215.7/32:443", "[2a00:1450::/64]:443"});
  named.use_host_addrs(addrs);
  EXPECT_TRUE(named.check_resolved(*parse_ip("93.184.215.7"), 443).allowed);
  EXPECT_FALSE(named.check_resolved(*parse_ip("93.184.215.7"), 80).allowed);
  EXPECT_TRUE(named.check_resolved(*parse_ip("2a00:1450::7"), 443).allowed);
  addrs->replace({});  // removed from the interface: public again
  EXPECT_TRUE(p.check_resolved(*parse_ip("93.184.215.7"), 443).allowed);
}

TEST(Egress, RuleGrammar) {
  EXPECT_TRUE(EgressRule::parse("[::1]:8080"));
  EXPECT_TRUE(EgressRule::parse("fd00::/8"));
  EXPECT_TRUE(EgressRule::parse("1.2.3.4:22"));
  for (std::string_view bad :
       {std::string_view(""), std::string_view("a.com:"), std::string_view("a.com:0"),
        std::string_view("a.com:65536"), std::string_view("a.com:080"),
        std::string_view("a.com:80x"), std::string_view("a .com"),
        std::string_view("a.com\0.b.com", 12), std::string_view("127.1"),
        std::string_view("0x7f000001:80"), std::string_view("10.0.0.0/33"),
        std::string_view("[::1"), std::string_view("[::1]x"), std::string_view("*.*.a.com"),
        std::string_view("a.com:80:90")}) {
    EXPECT_FALSE(EgressRule::parse(bad)) << bad;
  }
  auto all = EgressPolicy::parse({"good.com", "bad com", "x:0"});
  ASSERT_FALSE(all);
  EXPECT_NE(all.error().message().find("bad com"), std::string::npos);
  EXPECT_NE(all.error().message().find("x:0"), std::string::npos);
}

// Approvals: which names are asked about, and the rule "for this session" would add.
TEST(Egress, AskRule) {
  EgressPolicy p = *EgressPolicy::parse({"api.example.com"});
  EXPECT_FALSE(p.asks_anything());
  EXPECT_EQ(p.ask_rule("x.example.com"), std::nullopt);
  p.add_ask(*EgressRule::parse("*.example.com:8443"));
  p.add_ask(*EgressRule::parse("plain.test"));
  EXPECT_TRUE(p.asks_anything());
  EXPECT_EQ(p.ask_rule("X.Example.com"), "x.example.com:8443");
  EXPECT_EQ(p.ask_rule("plain.test"), "plain.test");
  EXPECT_EQ(p.ask_rule("other.test"), std::nullopt);
  EXPECT_EQ(p.ask_rule("bad name"), std::nullopt);
  p.set_ask_unlisted(true);
  EXPECT_EQ(p.ask_rule("other.test"), "other.test");
  // A name denied at run time is never asked about.
  p.add_deny(*EgressRule::parse("other.test:*"));
  EXPECT_EQ(p.ask_rule("other.test"), std::nullopt);
  // Asking changes no decision.
  EXPECT_FALSE(p.decide_name_any_port("x.example.com").allowed);
  EXPECT_FALSE(p.decide("x.example.com", 8443).allowed);
}

}  // namespace
}  // namespace agentbox::policy
