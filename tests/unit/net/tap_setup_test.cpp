// The box's tap: created and configured with libnl inside a fresh network namespace.
#include "agentbox/net/tap_setup.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "testkit/skip.hpp"

namespace agentbox::net {
namespace {

TEST(TapSetup, PrepareRefusesBadSpecs) {
  EXPECT_TRUE(TapSetup::prepare(TapSpec{}));
  EXPECT_FALSE(TapSetup::prepare(TapSpec{.name = ""}));
  EXPECT_FALSE(TapSetup::prepare(TapSpec{.name = "a-name-longer-than-ifnamsiz"}));
  EXPECT_FALSE(TapSetup::prepare(TapSpec{.mtu = 100}));
  EXPECT_FALSE(TapSetup::prepare(TapSpec{.prefix = 0}));
}

TEST(TapSetup, MissingTunIsTheOpenStep) {
  auto t = TapSetup::prepare(TapSpec{});
  ASSERT_TRUE(t);
  TapResult r = t->apply("/nonexistent-agentbox-root");
  EXPECT_EQ(r.step, TapStep::kOpenTun);
  EXPECT_EQ(r.err, ENOENT);
  EXPECT_EQ(r.fd, -1);
}

std::string slurp(const char* path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Codes a child reports: which check failed.
enum Code { kOk = 0, kNoNs = 10, kApply, kMtu, kAddr, kUp, kRoute, kIpv6, kPing, kVnet };

int check_in_fresh_netns(bool offload) {
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
    return kNoNs;
  }
  auto t = TapSetup::prepare(TapSpec{.name = "eth0", .ping_gid = 65534, .offload = offload});
  TapResult r = t->apply("");
  if (r.err != 0) {
    return kApply;
  }
  // The fd's flags say whether every frame carries a virtio_net_hdr (what FdTap must be told).
  ifreq tf{};
  if (::ioctl(r.fd, TUNGETIFF, &tf) != 0 || ((tf.ifr_flags & IFF_VNET_HDR) != 0) != offload) {
    return kVnet;
  }
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strcpy(ifr.ifr_name, "eth0");
  if (::ioctl(s, SIOCGIFMTU, &ifr) != 0 || ifr.ifr_mtu != 65520) {
    return kMtu;
  }
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0 || (ifr.ifr_flags & IFF_UP) == 0) {
    return kUp;
  }
  if (::ioctl(s, SIOCGIFADDR, &ifr) != 0) {
    return kAddr;
  }
  sockaddr_in sin{};
  std::memcpy(&sin, &ifr.ifr_addr, sizeof sin);
  if (sin.sin_addr.s_addr != htonl(0x0a000264)) {
    return kAddr;
  }
  // /proc/net/route: "eth0 00000000 0202000A ..." is the default route via 10.0.2.2.
  if (slurp("/proc/net/route").find("eth0\t00000000\t0202000A") == std::string::npos) {
    return kRoute;
  }
  std::string v6 = slurp("/proc/sys/net/ipv6/conf/eth0/disable_ipv6");
  if (!v6.empty() && v6 != "1\n") {
    return kIpv6;
  }
  ::close(r.fd);
  return kOk;
}

class TapSetupInNetns : public ::testing::TestWithParam<bool> {};

TEST_P(TapSetupInNetns, ConfiguresTheTapInAFreshNetworkNamespace) {
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    testkit::skip("/dev/net/tun is not usable here");
    return;
  }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::_exit(check_in_fresh_netns(GetParam()));
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  if (WEXITSTATUS(st) == kNoNs) {
    testkit::skip("cannot create a user + network namespace here");
    return;
  }
  EXPECT_EQ(WEXITSTATUS(st), kOk) << "failed check " << WEXITSTATUS(st)
                                  << " (11 apply, 12 mtu, 13 addr, 14 up, 15 route, 16 ipv6, "
                                     "18 vnet header flag)";
}

INSTANTIATE_TEST_SUITE_P(Offload, TapSetupInNetns, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "VnetHdr" : "Plain"; });

}  // namespace
}  // namespace agentbox::net
