// Default FlowHandler: --connect-to parsing and overrides, rebinding guard on resolved addresses.
#include "agentbox/net/connect.hpp"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

namespace agentbox::net {
namespace {

TEST(ConnectTo, Grammar) {
  auto ct = parse_connect_to(std::string_view("API.example.com:443:127.0.0.1:8443"));
  ASSERT_TRUE(ct);
  EXPECT_EQ(ct->host, "api.example.com");
  EXPECT_EQ(ct->port, 443);
  EXPECT_EQ(ct->addr.to_string(), "127.0.0.1");
  EXPECT_EQ(ct->to_port, 8443);
  EXPECT_TRUE(parse_connect_to(std::string_view("a.com:80:[::1]:8080")));
  for (std::string_view bad : {"a.com:80:127.0.0.1", "a.com:0:127.0.0.1:1", "a.com:80:host:80",
                               "a b:80:127.0.0.1:80", "a.com:80:127.1:80", ""}) {
    EXPECT_FALSE(parse_connect_to(bad)) << bad;
  }
}

struct Listener {
  base::UniqueFd fd;
  uint16_t port = 0;
  Listener() {
    fd = base::UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(listen(fd.get(), 4), 0);
    socklen_t len = sizeof sa;
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
  }
  bool has_pending() const {
    pollfd p{fd.get(), POLLIN, 0};
    return poll(&p, 1, 200) == 1;
  }
};

FlowInfo flow(std::string name, uint16_t port) {
  FlowInfo fi;
  fi.id = 1;
  fi.name = std::move(name);
  fi.orig_port = port;
  return fi;
}

TEST(ConnectHandler, OverrideReachesLoopbackWithoutResolving) {
  Listener l;
  auto policy = *policy::EgressPolicy::parse({"api.example.com"});
  int resolves = 0;
  ConnectHandler h(policy,
                   {*parse_connect_to(
                       std::string_view(fmt::format("api.example.com:443:127.0.0.1:{}", l.port)))},
                   [&](const std::string&) -> base::Result<std::vector<policy::IpAddr>> {
                     ++resolves;
                     return std::vector<policy::IpAddr>{};
                   });
  auto r = h.on_open(flow("api.example.com", 443));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->fd);
  EXPECT_TRUE(l.has_pending());
  EXPECT_EQ(resolves, 0);
}

TEST(ConnectHandler, ResolvedSpecialAddressesAreRefused) {
  Listener l;
  auto policy = *policy::EgressPolicy::parse({"rebind.example.com:*"});
  for (const char* evil :
       {"127.0.0.1", "169.254.169.254", "10.1.2.3", "::1", "fd00:ec2::254", "::ffff:127.0.0.1"}) {
    ConnectHandler h(policy, {}, [&](const std::string&) {
      return base::Result<std::vector<policy::IpAddr>>(
          std::vector<policy::IpAddr>{*policy::parse_ip(evil)});
    });
    auto r = h.on_open(flow("rebind.example.com", l.port));
    ASSERT_FALSE(r) << evil;
    EXPECT_NE(r.error().message().find("refused"), std::string::npos) << r.error().message();
  }
  EXPECT_FALSE(l.has_pending());  // nothing ever reached the listener
}

// An address that cannot even be tried (here multicast: connect(2) says ENETUNREACH at once,
// as it does for IPv6 on a host without it) gives way to the next one.
TEST(ConnectHandler, AddressThatFailsAtOnceFallsThroughToTheNext) {
  Listener l;
  auto policy =
      *policy::EgressPolicy::parse({"svc.example.com:*", "224.0.0.0/4:*", "127.0.0.1/32:*"});
  ConnectHandler h(policy, {}, [&](const std::string&) {
    return base::Result<std::vector<policy::IpAddr>>(std::vector<policy::IpAddr>{
        *policy::parse_ip("224.0.0.1"), *policy::parse_ip("127.0.0.1")});
  });
  auto r = h.on_open(flow("svc.example.com", l.port));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(l.has_pending());
  ConnectHandler only_bad(policy, {}, [&](const std::string&) {
    return base::Result<std::vector<policy::IpAddr>>(
        std::vector<policy::IpAddr>{*policy::parse_ip("224.0.0.1")});
  });
  auto bad = only_bad.on_open(flow("svc.example.com", l.port));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("connect"), std::string::npos) << bad.error().message();
}

TEST(ConnectHandler, SpecialAddressAllowedWhenACidrRuleNamesIt) {
  Listener l;
  auto policy = *policy::EgressPolicy::parse({"svc.example.com:*", "127.0.0.1/32:*"});
  ConnectHandler h(policy, {}, [&](const std::string&) {
    return base::Result<std::vector<policy::IpAddr>>(std::vector<policy::IpAddr>{
        *policy::parse_ip("169.254.169.254"), *policy::parse_ip("127.0.0.1")});
  });
  auto r = h.on_open(flow("svc.example.com", l.port));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(l.has_pending());
}

}  // namespace
}  // namespace agentbox::net
