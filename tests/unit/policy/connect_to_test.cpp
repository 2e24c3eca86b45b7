// The --connect-to grammar shared by config validation and the connect handler.
#include "agentbox/policy/connect_to.hpp"

#include <gtest/gtest.h>

namespace agentbox::policy {
namespace {

TEST(ConnectTo, ParsesCurlsShape) {
  auto ct = parse_connect_to("API.Example.com.:443:127.0.0.1:8443");
  ASSERT_TRUE(ct);
  EXPECT_EQ(ct->host, "api.example.com");
  EXPECT_EQ(ct->port, 443);
  EXPECT_EQ(ct->addr.to_string(), "127.0.0.1");
  EXPECT_EQ(ct->to_port, 8443);
  auto v6 = parse_connect_to("a.test:80:[::1]:8080");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->addr.to_string(), "::1");
}

TEST(ConnectTo, SaysWhatIsWrong) {
  struct Case {
    const char* in;
    const char* why;
  };
  for (const Case& c :
       {Case{"a.test:443:127.0.0.1", "expected four fields"}, Case{"", "expected four fields"},
        Case{"a b:443:127.0.0.1:1", "HOST is not a valid host name"},
        Case{"a.test:0:127.0.0.1:1", "ports must be 1-65535"},
        Case{"a.test:443:127.0.0.1:65536", "ports must be 1-65535"},
        Case{"a.test:443:localhost:1", "ADDR must be an IP address"},
        // Only canonical address text: no decimal or short spellings.
        Case{"a.test:443:2130706433:1", "ADDR must be an IP address"},
        Case{"a.test:443:127.1:1", "ADDR must be an IP address"}}) {
    auto r = parse_connect_to(c.in);
    ASSERT_FALSE(r) << c.in;
    EXPECT_EQ(r.error().message(), c.why) << c.in;
  }
}

}  // namespace
}  // namespace agentbox::policy

namespace agentbox::policy {

// --host-port / --publish: PORT or PORT:PORT, decimal 1-65535, nothing else (no address: both
// ends are loopback by construction).
TEST(PortMap, ParsesOneOrTwoPorts) {
  auto one = parse_port_map("3000");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->port, 3000);
  EXPECT_EQ(one->to_port, 3000);
  auto two = parse_port_map("8080:80");
  ASSERT_TRUE(two);
  EXPECT_EQ(two->port, 8080);
  EXPECT_EQ(two->to_port, 80);
  for (const char* bad : {"", "0", "65536", "-1", "+80", " 80", "80 ", "0x50", "web", "80:", ":80",
                          "1:2:3", "127.0.0.1:80", "[::1]:80", "80:0", "99999999999"}) {
    EXPECT_FALSE(parse_port_map(bad)) << bad;
  }
}

}  // namespace agentbox::policy
