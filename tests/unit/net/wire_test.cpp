// Wire parsers and builders: round trips, checksums, and rejection of malformed input.
#include "agentbox/net/wire.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace agentbox::net {
namespace {

const L2 kL2{.src = {0x52, 0x55, 0x0a, 0, 2, 2}, .dst = {0x02, 0, 0, 0, 0, 1}};
const Ip4 kBox = ip4(10, 0, 2, 100);
const Ip4 kGw = ip4(10, 0, 2, 2);

Bytes as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(Wire, ReaderIsBoundsChecked) {
  std::array<std::byte, 3> b{std::byte{1}, std::byte{2}, std::byte{3}};
  Reader r(b);
  EXPECT_EQ(r.u16(), 0x0102);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.u16(), 0);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.u8(), 0);
  EXPECT_TRUE(r.rest().empty());
}

TEST(Wire, TcpRoundTripWithOptions) {
  std::vector<std::byte> f;
  std::string data = "hello";
  build_tcp(f, kL2,
            {.src = kGw,
             .dst = kBox,
             .sport = 443,
             .dport = 40000,
             .seq = 7,
             .ack = 9,
             .flags = tcpflag::kSyn | tcpflag::kAck,
             .window = 1000,
             .mss = 1460,
             .wscale = 7},
            as_bytes(data));
  auto e = parse_ethernet(f);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, kEtherIpv4);
  EXPECT_EQ(e->src, kL2.src);
  auto ip = parse_ipv4(e->payload);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->src, kGw);
  EXPECT_EQ(ip->proto, kProtoTcp);
  auto t = parse_tcp(ip->payload, ip->src, ip->dst);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->sport, 443);
  EXPECT_EQ(t->seq, 7u);
  EXPECT_EQ(t->ack, 9u);
  EXPECT_TRUE(t->has(tcpflag::kSyn));
  EXPECT_EQ(t->options.mss, 1460);
  EXPECT_EQ(t->options.wscale, 7);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(t->payload.data()), t->payload.size()),
            "hello");
  // Wrong pseudo-header (other dst) -> checksum failure.
  EXPECT_FALSE(parse_tcp(ip->payload, ip->src, kGw));
  // Flip one payload bit -> checksum failure.
  f.back() ^= std::byte{1};
  EXPECT_FALSE(parse_tcp(parse_ipv4(parse_ethernet(f)->payload)->payload, kGw, kBox));
}

TEST(Wire, TruncatedFramesAreRejectedAtEveryLength) {
  std::vector<std::byte> f;
  TcpOut t;
  t.src = kBox;
  t.dst = kGw;
  t.sport = 1;
  t.dport = 2;
  t.flags = tcpflag::kAck;
  build_tcp(f, kL2, t, {});
  for (size_t n = 0; n < f.size(); ++n) {
    Bytes cut(f.data(), n);
    auto e = parse_ethernet(cut);
    if (!e) {
      continue;
    }
    auto ip = parse_ipv4(e->payload);
    if (!ip) {
      continue;
    }
    EXPECT_FALSE(parse_tcp(ip->payload, ip->src, ip->dst)) << n;
  }
}

TEST(Wire, FragmentsAndBadHeadersAreDropped) {
  std::vector<std::byte> f;
  build_udp(f, kL2, kBox, kGw, 5000, 53, {});
  auto ip_bytes = std::vector<std::byte>(f.begin() + kEthHeader, f.end());
  ASSERT_TRUE(parse_ipv4(ip_bytes));
  auto set_frag = [&](uint16_t v) {
    auto p = ip_bytes;
    p[6] = std::byte{static_cast<uint8_t>(v >> 8)};
    p[7] = std::byte{static_cast<uint8_t>(v)};
    p[10] = p[11] = std::byte{0};
    uint16_t sum = checksum_fold(checksum_add(0, Bytes(p).first(20)));
    p[10] = std::byte{static_cast<uint8_t>(sum >> 8)};
    p[11] = std::byte{static_cast<uint8_t>(sum)};
    return p;
  };
  EXPECT_TRUE(parse_ipv4(set_frag(0x4000)));   // DF only
  EXPECT_FALSE(parse_ipv4(set_frag(0x2000)));  // MF
  EXPECT_FALSE(parse_ipv4(set_frag(0x0001)));  // offset
  auto bad = ip_bytes;
  bad[8] = std::byte{1};  // TTL changed, checksum stale
  EXPECT_FALSE(parse_ipv4(bad));
  auto v6 = ip_bytes;
  v6[0] = std::byte{0x65};
  EXPECT_FALSE(parse_ipv4(v6));
}

TEST(Wire, IpPayloadIsTrimmedToTotalLength) {
  std::vector<std::byte> f;
  build_udp(f, kL2, kBox, kGw, 5000, 53, as_bytes("abc"));
  f.resize(f.size() + 10);  // Ethernet padding
  auto ip = parse_ipv4(parse_ethernet(f)->payload);
  ASSERT_TRUE(ip);
  auto u = parse_udp(ip->payload, ip->src, ip->dst);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->payload.size(), 3u);
  EXPECT_EQ(u->dport, 53);
}

TEST(Wire, ArpAndIcmp) {
  std::vector<std::byte> f;
  build_arp_reply(f, kL2, kGw, kBox);
  auto a = parse_arp(parse_ethernet(f)->payload);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->op, 2);
  EXPECT_EQ(a->spa, kGw);
  EXPECT_EQ(a->sha, kL2.src);
  EXPECT_EQ(a->tpa, kBox);
  build_icmp_echo_reply(f, kL2, kGw, kBox, 77, 3, as_bytes("ping"));
  auto ip = parse_ipv4(parse_ethernet(f)->payload);
  auto e = parse_icmp_echo(ip->payload);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, 0);
  EXPECT_EQ(e->id, 77);
  EXPECT_EQ(e->seq, 3);
  EXPECT_EQ(e->payload.size(), 4u);
}

TEST(Wire, MalformedTcpOptionsKeepValidPrefix) {
  std::vector<std::byte> seg(28, std::byte{0});
  seg[12] = std::byte{7 << 4};                                  // 28-byte header
  const uint8_t opts[] = {2, 4, 0x05, 0xb4, 1, 3, 0xff, 0xff};  // MSS 1460, NOP, bad length
  std::memcpy(seg.data() + 20, opts, sizeof opts);
  uint16_t sum =
      checksum_fold(checksum_add(pseudo_header_sum(kBox, kGw, kProtoTcp, seg.size()), seg));
  seg[16] = std::byte{static_cast<uint8_t>(sum >> 8)};
  seg[17] = std::byte{static_cast<uint8_t>(sum)};
  auto t = parse_tcp(seg, kBox, kGw);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->options.mss, 1460);
  EXPECT_FALSE(t->options.wscale);
}

std::vector<std::byte> seed(const std::string& rel) {
  std::ifstream in(std::string(AGENTBOX_SOURCE_DIR) + "/tests/fuzz/corpus/" + rel,
                   std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  std::memcpy(out.data(), c.data(), c.size());
  return out;
}

// The seed generator (tests/fuzz/make_seeds.py) computes checksums independently of wire.cpp.
TEST(Wire, SeedFramesFromTheIndependentGeneratorParse) {
  auto syn = seed("eth/syn");
  ASSERT_FALSE(syn.empty());
  auto ip = parse_ipv4(parse_ethernet(syn)->payload);
  ASSERT_TRUE(ip);
  auto t = parse_tcp(ip->payload, ip->src, ip->dst);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->options.mss, 65480);
  EXPECT_EQ(t->options.wscale, 7);
  EXPECT_TRUE(t->options.sack_permitted);
  ASSERT_TRUE(t->options.timestamps);
  EXPECT_EQ(t->options.timestamps->first, 1u);
  auto dns = seed("eth/dns");
  ip = parse_ipv4(parse_ethernet(dns)->payload);
  ASSERT_TRUE(ip);
  EXPECT_TRUE(parse_udp(ip->payload, ip->src, ip->dst));
  auto ping = seed("eth/ping");
  ip = parse_ipv4(parse_ethernet(ping)->payload);
  ASSERT_TRUE(ip);
  EXPECT_TRUE(parse_icmp_echo(ip->payload));
  EXPECT_TRUE(parse_ipv4(seed("ipv4/opts")));
  EXPECT_FALSE(parse_ipv4(seed("ipv4/frag")));
}

// checksum_add (word-at-a-time, native order) against the textbook 16-bit big-endian loop, over
// every length up to 300 at every alignment, plus a full 64 KiB segment and a chained sum.
uint32_t reference_sum(uint32_t sum, Bytes d) {
  size_t i = 0;
  for (; i + 1 < d.size(); i += 2) {
    sum += (std::to_integer<uint32_t>(d[i]) << 8) | std::to_integer<uint32_t>(d[i + 1]);
    sum = (sum & 0xffff) + (sum >> 16);
  }
  if (i < d.size()) {
    sum += std::to_integer<uint32_t>(d[i]) << 8;
  }
  return sum;
}

TEST(Checksum, MatchesReferenceAtEveryLengthAndAlignment) {
  std::vector<std::byte> buf(70000);
  uint32_t x = 12345;
  for (auto& b : buf) {
    x = x * 1103515245 + 12345;
    b = std::byte{static_cast<uint8_t>(x >> 16)};
  }
  for (size_t align = 0; align < 8; ++align) {
    for (size_t len = 0; len <= 300; ++len) {
      Bytes d = Bytes(buf).subspan(align, len);
      ASSERT_EQ(checksum_fold(checksum_add(0, d)), checksum_fold(reference_sum(0, d)))
          << "align " << align << " len " << len;
    }
  }
  for (size_t len : {65535u, 65480u, 65481u, 69999u}) {
    Bytes d = Bytes(buf).subspan(1, len);
    EXPECT_EQ(checksum_fold(checksum_add(0, d)), checksum_fold(reference_sum(0, d))) << len;
    uint32_t pseudo = pseudo_header_sum(ip4(10, 0, 2, 100), ip4(198, 18, 0, 1), kProtoTcp, len);
    EXPECT_EQ(checksum_fold(checksum_add(pseudo, d)), checksum_fold(reference_sum(pseudo, d)));
  }
  // All-ones data: the worst case for carries.
  std::vector<std::byte> ones(65536, std::byte{0xff});
  EXPECT_EQ(checksum_fold(checksum_add(0xfffe, ones)), checksum_fold(reference_sum(0xfffe, ones)));
}

}  // namespace
}  // namespace agentbox::net
