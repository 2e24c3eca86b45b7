// The session's network on a real event loop, with a SOCK_SEQPACKET pair standing in for the tap
// (one frame per read and write, each behind a virtio_net_hdr like the offloading tap): DNS, a
// connection through --connect-to to a loopback listener, the TCP timer on the loop's timerfd,
// and the summary by host.
#include "agentbox/app/session_network.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>

#include "agentbox/net/wire.hpp"

namespace agentbox::app {
namespace {

using namespace std::chrono_literals;
using net::Bytes;

const net::Mac kBoxMac = {0x02, 0, 0, 0, 0, 0x01};
const net::Mac kGwMac = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
const net::Ip4 kBox = net::ip4(10, 0, 2, 100);
const net::Ip4 kDns = net::ip4(10, 0, 2, 3);

std::vector<std::byte> dns_query(const std::string& name, uint16_t id) {
  std::vector<uint8_t> q = {
      static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) {
      dot = name.size();
    }
    q.push_back(static_cast<uint8_t>(dot - start));
    q.insert(q.end(), name.begin() + static_cast<long>(start),
             name.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  q.insert(q.end(), {0, 0, 1, 0, 1});
  std::vector<std::byte> out(q.size());
  std::memcpy(out.data(), q.data(), q.size());
  return out;
}

struct Frame {
  net::Ipv4 ip;
  std::optional<net::Udp> udp;
  std::optional<net::Tcp> tcp;
  std::vector<std::byte> raw;
};

class SessionNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
    ASSERT_EQ(::listen(listener_, 4), 0);
    socklen_t len = sizeof sin;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&sin), &len);
    port_ = ntohs(sin.sin_port);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    box_ = sv[0];
    tap_ = base::UniqueFd(sv[1]);
    ::fcntl(box_, F_SETFL, O_NONBLOCK);
  }
  void TearDown() override {
    ::close(box_);
    ::close(listener_);
  }
  // The session's tap speaks virtio_net_hdr (checksum offload, TapSpec::offload): every frame
  // carries a 10-byte header in front. The box's frames here have full checksums (flags 0).
  static constexpr size_t kVnetHdr = 10;
  void send(const std::vector<std::byte>& frame) {
    std::vector<std::byte> out(kVnetHdr);
    out.insert(out.end(), frame.begin(), frame.end());
    ASSERT_EQ(::write(box_, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  }
  // Runs the loop until a frame to the box satisfies `want` or `timeout` passes.
  std::optional<Frame> pump(event::Loop& loop, const std::function<bool(const Frame&)>& want,
                            std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<std::byte> buf(70000);
    while (std::chrono::steady_clock::now() < deadline) {
      (void)loop.run_once(10ms);
      ssize_t n;
      while ((n = ::read(box_, buf.data(), buf.size())) > static_cast<ssize_t>(kVnetHdr)) {
        Frame f;
        // TCP to the box goes with a partial checksum and NEEDS_CSUM (flags bit 0), as the box's
        // kernel would accept it; UDP (DNS) and the rest carry full checksums.
        const bool partial = (std::to_integer<unsigned>(buf[0]) & 1) != 0;
        f.raw.assign(buf.begin() + kVnetHdr, buf.begin() + n);
        auto eth = net::parse_ethernet(f.raw);
        if (!eth || eth->type != 0x0800) {
          continue;
        }
        auto ip = net::parse_ipv4(eth->payload);
        if (!ip) {
          continue;
        }
        f.ip = *ip;
        if (ip->proto == 17) {
          f.udp = net::parse_udp(ip->payload, ip->src, ip->dst);
        } else if (ip->proto == 6) {
          EXPECT_TRUE(partial) << "TCP to the box should use checksum offload";
          f.tcp = net::parse_tcp(ip->payload, ip->src, ip->dst, !partial);
        }
        if (want(f)) {
          return f;
        }
      }
    }
    return std::nullopt;
  }
  int listener_ = -1;
  uint16_t port_ = 0;
  int box_ = -1;
  base::UniqueFd tap_;
};

TEST_F(SessionNetworkTest, ServesDnsAndConnectionsOnTheLoop) {
  config::Policy policy;
  std::string p = std::to_string(port_);
  policy.net_allow.push_back({"data.test:" + p, {"--allow"}});
  policy.connect_to.push_back({"data.test:" + p + ":127.0.0.1:" + p, {"--connect-to"}});
  audit::MemorySink sink;
  auto network = SessionNetwork::create(policy, ::getgid(), sink);
  ASSERT_TRUE(network) << network.error().message();
  ASSERT_NE((*network)->box_hook(), nullptr);
  auto loop = event::Loop::create();
  ASSERT_TRUE(loop);
  ASSERT_TRUE((*network)->start(std::move(tap_), *loop));

  std::vector<std::byte> frame;
  net::L2 up{.src = kBoxMac, .dst = kGwMac};
  net::build_udp(frame, up, kBox, kDns, 5353, 53, dns_query("data.test", 1));
  send(frame);
  auto answer = pump(
      *loop, [](const Frame& f) { return f.udp && f.udp->sport == 53; }, 2s);
  ASSERT_TRUE(answer);
  Bytes a = answer->udp->payload;
  ASSERT_GE(a.size(), 16u);
  EXPECT_EQ(static_cast<uint8_t>(a[3]) & 0xF, 0);  // NOERROR
  net::Ip4 synthetic = (net::Ip4{static_cast<uint8_t>(a[a.size() - 4])} << 24) |
                       (net::Ip4{static_cast<uint8_t>(a[a.size() - 3])} << 16) |
                       (net::Ip4{static_cast<uint8_t>(a[a.size() - 2])} << 8) |
                       net::Ip4{static_cast<uint8_t>(a[a.size() - 1])};
  EXPECT_EQ(synthetic >> 17, net::ip4(198, 18, 0, 0) >> 17);

  net::build_udp(frame, up, kBox, kDns, 5354, 53, dns_query("denied.test", 2));
  send(frame);
  auto nx = pump(
      *loop, [](const Frame& f) { return f.udp && f.udp->dport == 5354; }, 2s);
  ASSERT_TRUE(nx);
  EXPECT_EQ(static_cast<uint8_t>(nx->udp->payload[3]) & 0xF, 3);  // NXDOMAIN

  // SYN to the synthetic address: the supervisor connects to the listener (--connect-to), then
  // answers SYN-ACK. Unacknowledged, the SYN-ACK is sent again by the TCP timer (timerfd).
  net::TcpOut syn{.src = kBox,
                  .dst = synthetic,
                  .sport = 40000,
                  .dport = port_,
                  .seq = 1000,
                  .flags = 0x02,
                  .window = 65535,
                  .mss = 1460};
  net::build_tcp(frame, up, syn, {});
  send(frame);
  auto is_synack = [](const Frame& f) { return f.tcp && f.tcp->flags == 0x12; };
  auto synack = pump(*loop, is_synack, 2s);
  ASSERT_TRUE(synack);
  EXPECT_EQ(synack->tcp->ack, 1001u);
  int accepted = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  EXPECT_GE(accepted, 0);
  auto again = pump(*loop, is_synack, 3s);
  ASSERT_TRUE(again) << "no SYN-ACK retransmission: the TCP timer did not fire";
  EXPECT_EQ(again->tcp->seq, synack->tcp->seq);

  net::TcpOut rst{
      .src = kBox, .dst = synthetic, .sport = 40000, .dport = port_, .seq = 1001, .flags = 0x04};
  net::build_tcp(frame, up, rst, {});
  send(frame);
  (void)pump(
      *loop, [](const Frame&) { return false; }, 100ms);
  if (accepted >= 0) {
    ::close(accepted);
  }

  std::vector<std::string> summary = (*network)->finish();
  ASSERT_EQ(summary.size(), 2u);
  EXPECT_EQ(summary[0], "network: 1 connection allowed: data.test 1");
  EXPECT_EQ(summary[1], "network: 1 denied (DNS queries and connections): denied.test 1");
  std::string log = sink.lines();
  for (const char* type : {"\"dns.query\"", "\"net.connect\"", "\"net.close\""}) {
    EXPECT_NE(log.find(type), std::string::npos) << type << "\n" << log;
  }
  EXPECT_EQ(loop->watch_count(), 0u) << "finish() left watches on the loop";
}

// The box chooses the names it asks for: a flood of distinct denied names is counted, but the
// summary remembers a bounded number of them.
TEST_F(SessionNetworkTest, SummaryOfAFloodOfNamesIsBounded) {
  audit::MemorySink sink;
  auto network = SessionNetwork::create(config::Policy{}, ::getgid(), sink);
  ASSERT_TRUE(network);
  auto loop = event::Loop::create();
  ASSERT_TRUE(loop);
  ASSERT_TRUE((*network)->start(std::move(tap_), *loop));
  std::vector<std::byte> frame;
  constexpr int kNames = 5000;
  for (int i = 0; i < kNames; ++i) {
    net::build_udp(frame, net::L2{.src = kBoxMac, .dst = kGwMac}, kBox, kDns, 5353, 53,
                   dns_query("x" + std::to_string(i) + ".exfil.test", static_cast<uint16_t>(i)));
    send(frame);
    ASSERT_TRUE(pump(
        *loop, [](const Frame& f) { return f.udp.has_value(); }, 2s));
  }
  std::vector<std::string> summary = (*network)->finish();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].rfind("network: 5000 denied (DNS queries and connections): ", 0), 0u)
      << summary[0];
  EXPECT_NE(summary[0].find(", and 4089+ more hosts"), std::string::npos) << summary[0];
}

TEST(SessionNetwork, UnvalidatedBadRuleNamesItsOrigin) {
  config::Policy policy;
  policy.net_allow.push_back({"bad host", {"work.toml", 3, 5}});
  audit::MemorySink sink;
  auto r = SessionNetwork::create(policy, 0, sink);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message().rfind("work.toml:3:5: `bad host`: ", 0), 0u) << r.error().message();
}

}  // namespace
}  // namespace agentbox::app
