// Wire formats of the tap link: Ethernet, ARP, IPv4, TCP, UDP, ICMP echo. Parsers and builders.
//
// Every byte here comes from the box and is hostile. Parsers read through a bounds-checked
// `Reader` over std::span<const std::byte> (never reinterpret_cast onto structs) and return
// nullopt for anything malformed: short buffers, bad lengths, bad checksums, IPv4 fragments.
// Builders write complete frames with correct checksums into a caller-owned vector.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace agentbox::net {

using Bytes = std::span<const std::byte>;
using Mac = std::array<uint8_t, 6>;
using Ip4 = uint32_t;  // host order

// Bounds-checked big-endian reader. A read past the end sets a sticky failure and returns 0.
class Reader {
 public:
  explicit Reader(Bytes data) : data_(data) {}
  uint8_t u8();
  uint16_t u16();
  uint32_t u32();
  Bytes bytes(size_t n);  // empty + failure if fewer than n remain
  void skip(size_t n) { (void)bytes(n); }
  [[nodiscard]] size_t pos() const { return pos_; }
  [[nodiscard]] size_t remaining() const { return ok_ ? data_.size() - pos_ : 0; }
  [[nodiscard]] Bytes rest() const { return ok_ ? data_.subspan(pos_) : Bytes{}; }
  [[nodiscard]] bool ok() const { return ok_; }

 private:
  Bytes data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

inline constexpr uint16_t kEtherIpv4 = 0x0800;
inline constexpr uint16_t kEtherArp = 0x0806;
inline constexpr uint16_t kEtherIpv6 = 0x86dd;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr size_t kEthHeader = 14;
inline constexpr size_t kIpv4Header = 20;
inline constexpr size_t kTcpHeader = 20;
inline constexpr size_t kUdpHeader = 8;

struct Ethernet {
  Mac dst{};
  Mac src{};
  uint16_t type = 0;
  Bytes payload;
};
[[nodiscard]] std::optional<Ethernet> parse_ethernet(Bytes frame);

struct Arp {
  uint16_t op = 0;  // 1 request, 2 reply
  Mac sha{};
  Ip4 spa = 0;
  Mac tha{};
  Ip4 tpa = 0;
};
// Ethernet/IPv4 ARP only.
[[nodiscard]] std::optional<Arp> parse_arp(Bytes payload);

struct Ipv4 {
  uint8_t tos = 0;
  uint16_t id = 0;
  uint8_t ttl = 0;
  uint8_t proto = 0;
  Ip4 src = 0;
  Ip4 dst = 0;
  Bytes payload;  // trimmed to the total length (Ethernet padding removed); options skipped
};
// Rejects bad version/IHL/total length/header checksum and every fragment (MF or offset != 0).
[[nodiscard]] std::optional<Ipv4> parse_ipv4(Bytes packet);

struct TcpOptions {
  std::optional<uint16_t> mss;
  std::optional<uint8_t> wscale;  // clamped to 14 (RFC 7323)
  bool sack_permitted = false;
  std::optional<std::pair<uint32_t, uint32_t>> timestamps;  // (TSval, TSecr)
};

namespace tcpflag {
inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;
}  // namespace tcpflag

struct Tcp {
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  TcpOptions options;
  Bytes payload;
  [[nodiscard]] bool has(uint8_t f) const { return (flags & f) != 0; }
};
// `segment` is the IPv4 payload; src/dst are needed for the pseudo-header checksum.
// `verify_checksum = false` for frames whose checksum the tap vouches for (checksum offload: the
// box's kernel leaves it partial; nothing crossed a wire that could corrupt it).
[[nodiscard]] std::optional<Tcp> parse_tcp(Bytes segment, Ip4 src, Ip4 dst,
                                           bool verify_checksum = true);

struct Udp {
  uint16_t sport = 0;
  uint16_t dport = 0;
  Bytes payload;
};
[[nodiscard]] std::optional<Udp> parse_udp(Bytes datagram, Ip4 src, Ip4 dst,
                                           bool verify_checksum = true);

struct IcmpEcho {
  uint8_t type = 0;  // 8 request, 0 reply
  uint16_t id = 0;
  uint16_t seq = 0;
  Bytes payload;
};
// Echo request/reply only (other ICMP types -> nullopt).
[[nodiscard]] std::optional<IcmpEcho> parse_icmp_echo(Bytes message);

// RFC 1071 checksum helpers.
[[nodiscard]] uint32_t checksum_add(uint32_t sum, Bytes data);
[[nodiscard]] uint16_t checksum_fold(uint32_t sum);
[[nodiscard]] uint32_t pseudo_header_sum(Ip4 src, Ip4 dst, uint8_t proto, size_t length);

// ---- builders: each appends one full Ethernet frame to `out` (cleared first) ----

struct L2 {
  Mac src{};
  Mac dst{};
};

void build_arp_reply(std::vector<std::byte>& out, const L2& l2, Ip4 sender_ip, Ip4 target_ip);

struct TcpOut {
  Ip4 src = 0;
  Ip4 dst = 0;
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  std::optional<uint16_t> mss;    // only on SYN
  std::optional<uint8_t> wscale;  // only on SYN
};
// `checksum = false` leaves the checksum partial (the pseudo-header sum only, as the kernel does
// with CHECKSUM_PARTIAL): for a vnet_hdr tap, which sends such frames with NEEDS_CSUM.
void build_tcp(std::vector<std::byte>& out, const L2& l2, const TcpOut& t, Bytes payload,
               bool checksum = true);

void build_udp(std::vector<std::byte>& out, const L2& l2, Ip4 src, Ip4 dst, uint16_t sport,
               uint16_t dport, Bytes payload);

void build_icmp_echo_reply(std::vector<std::byte>& out, const L2& l2, Ip4 src, Ip4 dst, uint16_t id,
                           uint16_t seq, Bytes payload);

// "10.0.2.2" for logs.
[[nodiscard]] std::string ip4_to_string(Ip4 a);
[[nodiscard]] constexpr Ip4 ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return (Ip4{a} << 24) | (Ip4{b} << 16) | (Ip4{c} << 8) | Ip4{d};
}

}  // namespace agentbox::net
