// Frame dispatch: ARP for gateway/DNS, ICMP echo, DNS over UDP, and drops with audit events.
#include "agentbox/net/stack.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "agentbox/net/epoll_poller.hpp"

namespace agentbox::net {
namespace {

const Ip4 kStackBox = ip4(10, 0, 2, 100);
const Mac kBoxMac = {0x02, 0, 0, 0, 0, 0x01};
const Mac kGwMac = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};

struct CaptureTap : Tap {
  std::vector<std::vector<std::byte>> out;
  std::vector<std::vector<std::byte>> in;
  void send_frame(Bytes f) override { out.emplace_back(f.begin(), f.end()); }
  base::Result<size_t> read_frame(std::span<std::byte> buf) override {
    if (in.empty()) {
      return size_t{0};
    }
    auto f = std::move(in.front());
    in.erase(in.begin());
    size_t n = std::min(f.size(), buf.size());
    std::memcpy(buf.data(), f.data(), n);
    return n;
  }
};

struct NoHandler : FlowHandler {
  base::Result<OpenResult> on_open(const FlowInfo&) override {
    return base::Error::msg("no upstream in this test");
  }
};

std::vector<std::byte> eth_frame(uint16_t type, const std::vector<std::byte>& payload) {
  std::vector<std::byte> f;
  for (auto b : kGwMac)
    f.push_back(std::byte{b});
  for (auto b : kBoxMac)
    f.push_back(std::byte{b});
  f.push_back(std::byte{static_cast<uint8_t>(type >> 8)});
  f.push_back(std::byte{static_cast<uint8_t>(type)});
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

std::vector<std::byte> arp_request(Ip4 target) {
  std::vector<std::byte> p;
  auto u8 = [&](uint8_t v) { p.push_back(std::byte{v}); };
  auto u16 = [&](uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
  };
  auto u32 = [&](uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  };
  u16(1);
  u16(0x0800);
  u8(6);
  u8(4);
  u16(1);
  for (auto b : kBoxMac)
    u8(b);
  u32(kStackBox);
  for (int i = 0; i < 6; ++i)
    u8(0);
  u32(target);
  return eth_frame(kEtherArp, p);
}

class StackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    poller_.emplace(std::move(*EpollPoller::create()));
    policy_ = *policy::EgressPolicy::parse({"example.com"});
    stack_.emplace(StackConfig{}, policy_, handler_, *poller_, tap_, audit_);
  }
  void feed(const std::vector<std::byte>& f) { stack_->on_frame(f, Clock::now()); }

  NoHandler handler_;
  std::optional<EpollPoller> poller_;
  policy::EgressPolicy policy_;
  CaptureTap tap_;
  audit::MemorySink audit_;
  std::optional<Stack> stack_;
};

TEST_F(StackTest, ArpAnswersOnlyForGatewayAndDns) {
  feed(arp_request(ip4(10, 0, 2, 2)));
  feed(arp_request(ip4(10, 0, 2, 3)));
  feed(arp_request(ip4(10, 0, 2, 77)));
  ASSERT_EQ(tap_.out.size(), 2u);
  auto e = parse_ethernet(tap_.out[0]);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->dst, kBoxMac);
  auto a = parse_arp(e->payload);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->op, 2);
  EXPECT_EQ(a->sha, kGwMac);
  EXPECT_EQ(a->spa, ip4(10, 0, 2, 2));
  EXPECT_EQ(parse_arp(parse_ethernet(tap_.out[1])->payload)->spa, ip4(10, 0, 2, 3));
}

std::vector<std::byte> icmp_echo_frame(Ip4 dst) {
  // Build an echo *reply* with our builder and turn it into a request (type 8, fixed checksum).
  std::vector<std::byte> f;
  std::string payload = "ping";
  build_icmp_echo_reply(f, L2{.src = kBoxMac, .dst = kGwMac}, kStackBox, dst, 7, 1,
                        Bytes(reinterpret_cast<const std::byte*>(payload.data()), 4));
  size_t icmp = kEthHeader + kIpv4Header;
  f[icmp] = std::byte{8};
  f[icmp + 2] = f[icmp + 3] = std::byte{0};
  uint16_t sum = checksum_fold(checksum_add(0, Bytes(f).subspan(icmp)));
  f[icmp + 2] = std::byte{static_cast<uint8_t>(sum >> 8)};
  f[icmp + 3] = std::byte{static_cast<uint8_t>(sum)};
  return f;
}

TEST_F(StackTest, PingTheGatewayOnlyAndDropTheRest) {
  feed(icmp_echo_frame(ip4(10, 0, 2, 2)));
  ASSERT_EQ(tap_.out.size(), 1u);
  auto ip = parse_ipv4(parse_ethernet(tap_.out[0])->payload);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->src, ip4(10, 0, 2, 2));
  auto echo = parse_icmp_echo(ip->payload);
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->type, 0);
  EXPECT_EQ(echo->id, 7);
  feed(icmp_echo_frame(ip4(8, 8, 8, 8)));
  feed(icmp_echo_frame(ip4(8, 8, 8, 8)));
  EXPECT_EQ(tap_.out.size(), 1u);
  EXPECT_EQ(stack_->counters().dropped, 2u);
  EXPECT_EQ(audit_.tally().count("net.drop"), 1u);  // one event per kind; the counter has volume
  EXPECT_NE(audit_.lines().find(R"("proto":"icmp","dst":"8.8.8.8")"), std::string::npos);
}

std::vector<std::byte> udp_frame(Ip4 dst, uint16_t dport, const std::vector<std::byte>& payload) {
  std::vector<std::byte> f;
  build_udp(f, L2{.src = kBoxMac, .dst = kGwMac}, kStackBox, dst, 33333, dport, payload);
  return f;
}

std::vector<std::byte> dns_a(const char* l1, const char* l2) {
  std::vector<std::byte> q = {std::byte{0x12}, std::byte{0x34}, std::byte{1}, std::byte{0},
                              std::byte{0},    std::byte{1},    std::byte{0}, std::byte{0},
                              std::byte{0},    std::byte{0},    std::byte{0}, std::byte{0}};
  for (const char* l : {l1, l2}) {
    q.push_back(std::byte{static_cast<uint8_t>(std::strlen(l))});
    for (const char* c = l; *c; ++c)
      q.push_back(std::byte{static_cast<uint8_t>(*c)});
  }
  for (uint8_t b : {0, 0, 1, 0, 1})
    q.push_back(std::byte{b});
  return q;
}

TEST_F(StackTest, DnsOverUdpAndOtherUdpDropped) {
  feed(udp_frame(ip4(10, 0, 2, 3), 53, dns_a("example", "com")));
  ASSERT_EQ(tap_.out.size(), 1u);
  auto ip = parse_ipv4(parse_ethernet(tap_.out[0])->payload);
  auto udp = parse_udp(ip->payload, ip->src, ip->dst);
  ASSERT_TRUE(udp);
  EXPECT_EQ(udp->sport, 53);
  EXPECT_EQ(udp->dport, 33333);
  Reader r(udp->payload);
  EXPECT_EQ(r.u16(), 0x1234);
  EXPECT_EQ(r.u16() & 0xf, 0);
  feed(udp_frame(ip4(8, 8, 8, 8), 53, dns_a("example", "com")));  // DNS elsewhere
  feed(udp_frame(ip4(10, 0, 2, 3), 443, {}));                     // QUIC-ish
  EXPECT_EQ(tap_.out.size(), 1u);
  EXPECT_EQ(stack_->counters().dropped, 2u);
  EXPECT_NE(audit_.lines().find(R"("type":"net.drop","proto":"udp","dst":"8.8.8.8","port":53)"),
            std::string::npos)
      << audit_.lines();
}

TEST_F(StackTest, Ipv6AndGarbageAreDroppedAndDrainIsBounded) {
  feed(eth_frame(kEtherIpv6, std::vector<std::byte>(40)));
  feed({std::byte{1}, std::byte{2}});
  EXPECT_EQ(stack_->counters().malformed, 1u);
  EXPECT_EQ(stack_->counters().dropped, 1u);
  for (int i = 0; i < 100; ++i)
    tap_.in.push_back(arp_request(ip4(10, 0, 2, 2)));
  auto n = stack_->drain(tap_, Clock::now(), 64);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 64u);
  EXPECT_EQ(*stack_->drain(tap_, Clock::now(), 64), 36u);
  EXPECT_EQ(*stack_->drain(tap_, Clock::now(), 64), 0u);
}

}  // namespace
}  // namespace agentbox::net
