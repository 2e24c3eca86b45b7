// Bounds-checked parsers and checksum-correct builders for the tap link's wire formats.
#include "agentbox/net/wire.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace agentbox::net {

uint8_t Reader::u8() {
  auto b = bytes(1);
  return b.empty() ? 0 : std::to_integer<uint8_t>(b[0]);
}

uint16_t Reader::u16() {
  auto b = bytes(2);
  return b.empty() ? 0
                   : static_cast<uint16_t>((std::to_integer<unsigned>(b[0]) << 8) |
                                           std::to_integer<unsigned>(b[1]));
}

uint32_t Reader::u32() {
  uint32_t hi = u16();
  return (hi << 16) | u16();
}

Bytes Reader::bytes(size_t n) {
  if (!ok_ || n > data_.size() - pos_) {
    ok_ = false;
    return {};
  }
  auto out = data_.subspan(pos_, n);
  pos_ += n;
  return out;
}

namespace {

Mac read_mac(Reader& r) {
  Mac m{};
  auto b = r.bytes(6);
  for (size_t i = 0; i < b.size(); ++i) {
    m[i] = std::to_integer<uint8_t>(b[i]);
  }
  return m;
}

class Writer {
 public:
  explicit Writer(std::vector<std::byte>& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(std::byte{v}); }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  }
  void mac(const Mac& m) {
    for (auto b : m) {
      u8(b);
    }
  }
  void bytes(Bytes b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void put16(size_t at, uint16_t v) {
    out_[at] = std::byte{static_cast<uint8_t>(v >> 8)};
    out_[at + 1] = std::byte{static_cast<uint8_t>(v)};
  }
  [[nodiscard]] size_t size() const { return out_.size(); }
  [[nodiscard]] Bytes from(size_t at) const { return Bytes(out_).subspan(at); }

 private:
  std::vector<std::byte>& out_;
};

void eth_header(Writer& w, const L2& l2, uint16_t type) {
  w.mac(l2.dst);
  w.mac(l2.src);
  w.u16(type);
}

// Writes an IPv4 header (no options) for a payload of `len`; returns the header's offset.
size_t ipv4_header(Writer& w, Ip4 src, Ip4 dst, uint8_t proto, size_t len) {
  size_t at = w.size();
  w.u8(0x45);
  w.u8(0);
  w.u16(static_cast<uint16_t>(kIpv4Header + len));
  w.u16(0);       // id: DF set, never fragmented
  w.u16(0x4000);  // DF
  w.u8(64);
  w.u8(proto);
  w.u16(0);
  w.u32(src);
  w.u32(dst);
  w.put16(at + 10, checksum_fold(checksum_add(0, w.from(at).first(kIpv4Header))));
  return at;
}

}  // namespace

uint32_t checksum_add(uint32_t sum, Bytes data) {
  // RFC 1071 section 2(B): the one's-complement sum is byte-order independent, so add native
  // 32-bit words into a 64-bit accumulator (no carry handling inside the loop: 2^32 words would
  // be needed to overflow) and swap once at the end. Several times faster than 16-bit big-endian
  // steps, and every data byte of every frame goes through here.
  const std::byte* p = data.data();
  size_t n = data.size();
  uint64_t acc = 0;
  while (n >= 16) {
    uint32_t w[4];
    std::memcpy(w, p, sizeof w);
    acc += uint64_t{w[0]} + w[1] + w[2] + w[3];
    p += 16;
    n -= 16;
  }
  while (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, sizeof w);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    acc += h;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    // A trailing odd byte is the high byte of a big-endian word padded with zero.
    uint16_t h = 0;
    std::memcpy(&h, p, 1);
    acc += h;
  }
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffu) + (acc >> 16);
  acc = (acc & 0xffffu) + (acc >> 16);
  auto folded = static_cast<uint16_t>(acc);
  if constexpr (std::endian::native == std::endian::little) {
    folded = static_cast<uint16_t>((folded >> 8) | (folded << 8));
  }
  // Keep the caller's running sum below the top bit, as checksum_fold expects.
  uint64_t total = uint64_t{sum} + folded;
  return static_cast<uint32_t>(total >= 0x80000000u ? (total & 0xffff) + (total >> 16) : total);
}

uint16_t checksum_fold(uint32_t sum) {
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum);
}

uint32_t pseudo_header_sum(Ip4 src, Ip4 dst, uint8_t proto, size_t length) {
  return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto +
         static_cast<uint32_t>(length);
}

std::optional<Ethernet> parse_ethernet(Bytes frame) {
  Reader r(frame);
  Ethernet e;
  e.dst = read_mac(r);
  e.src = read_mac(r);
  e.type = r.u16();
  if (!r.ok()) {
    return std::nullopt;
  }
  e.payload = r.rest();
  return e;
}

std::optional<Arp> parse_arp(Bytes payload) {
  Reader r(payload);
  uint16_t htype = r.u16();
  uint16_t ptype = r.u16();
  uint8_t hlen = r.u8();
  uint8_t plen = r.u8();
  Arp a;
  a.op = r.u16();
  a.sha = read_mac(r);
  a.spa = r.u32();
  a.tha = read_mac(r);
  a.tpa = r.u32();
  if (!r.ok() || htype != 1 || ptype != kEtherIpv4 || hlen != 6 || plen != 4) {
    return std::nullopt;
  }
  return a;
}

std::optional<Ipv4> parse_ipv4(Bytes packet) {
  Reader r(packet);
  uint8_t vihl = r.u8();
  Ipv4 ip;
  ip.tos = r.u8();
  uint16_t total = r.u16();
  ip.id = r.u16();
  uint16_t frag = r.u16();
  ip.ttl = r.u8();
  ip.proto = r.u8();
  r.skip(2);  // checksum, verified over the whole header below
  ip.src = r.u32();
  ip.dst = r.u32();
  size_t ihl = size_t{vihl & 0x0fu} * 4;
  if (!r.ok() || (vihl >> 4) != 4 || ihl < kIpv4Header || total < ihl || total > packet.size()) {
    return std::nullopt;
  }
  if ((frag & 0x3fff) != 0) {
    return std::nullopt;  // MF set or non-zero offset: fragments are dropped, never reassembled
  }
  if (checksum_fold(checksum_add(0, packet.first(ihl))) != 0) {
    return std::nullopt;
  }
  ip.payload = packet.subspan(ihl, total - ihl);
  return ip;
}

namespace {

void parse_tcp_options(Bytes opts, TcpOptions& o) {
  Reader r(opts);
  while (r.remaining() > 0) {
    uint8_t kind = r.u8();
    if (kind == 0) {
      break;  // end of option list
    }
    if (kind == 1) {
      continue;  // NOP
    }
    uint8_t len = r.u8();
    if (!r.ok() || len < 2) {
      break;  // malformed: ignore the rest, keep what was valid
    }
    Reader body(r.bytes(len - 2));
    if (!r.ok()) {
      break;
    }
    switch (kind) {
      case 2:
        if (len == 4) {
          o.mss = body.u16();
        }
        break;
      case 3:
        if (len == 3) {
          o.wscale = std::min<uint8_t>(body.u8(), 14);
        }
        break;
      case 4:
        o.sack_permitted = len == 2;
        break;
      case 8:
        if (len == 10) {
          uint32_t val = body.u32();
          o.timestamps = std::pair{val, body.u32()};
        }
        break;
      default:
        break;
    }
  }
}

bool transport_checksum_ok(Bytes seg, Ip4 src, Ip4 dst, uint8_t proto) {
  return checksum_fold(checksum_add(pseudo_header_sum(src, dst, proto, seg.size()), seg)) == 0;
}

}  // namespace

std::optional<Tcp> parse_tcp(Bytes segment, Ip4 src, Ip4 dst) {
  Reader r(segment);
  Tcp t;
  t.sport = r.u16();
  t.dport = r.u16();
  t.seq = r.u32();
  t.ack = r.u32();
  uint8_t off = r.u8();
  t.flags = r.u8();
  t.window = r.u16();
  r.skip(4);  // checksum, urgent pointer
  size_t hlen = static_cast<size_t>(off >> 4) * 4;
  if (!r.ok() || hlen < kTcpHeader || hlen > segment.size()) {
    return std::nullopt;
  }
  if (!transport_checksum_ok(segment, src, dst, kProtoTcp)) {
    return std::nullopt;
  }
  parse_tcp_options(segment.subspan(kTcpHeader, hlen - kTcpHeader), t.options);
  t.payload = segment.subspan(hlen);
  return t;
}

std::optional<Udp> parse_udp(Bytes datagram, Ip4 src, Ip4 dst) {
  Reader r(datagram);
  Udp u;
  u.sport = r.u16();
  u.dport = r.u16();
  uint16_t len = r.u16();
  uint16_t sum = r.u16();
  if (!r.ok() || len < kUdpHeader || len > datagram.size()) {
    return std::nullopt;
  }
  auto d = datagram.first(len);
  if (sum != 0 && !transport_checksum_ok(d, src, dst, kProtoUdp)) {
    return std::nullopt;
  }
  u.payload = d.subspan(kUdpHeader);
  return u;
}

std::optional<IcmpEcho> parse_icmp_echo(Bytes message) {
  Reader r(message);
  IcmpEcho e;
  e.type = r.u8();
  uint8_t code = r.u8();
  r.skip(2);
  e.id = r.u16();
  e.seq = r.u16();
  if (!r.ok() || (e.type != 8 && e.type != 0) || code != 0 ||
      checksum_fold(checksum_add(0, message)) != 0) {
    return std::nullopt;
  }
  e.payload = r.rest();
  return e;
}

void build_arp_reply(std::vector<std::byte>& out, const L2& l2, Ip4 sender_ip, Ip4 target_ip) {
  out.clear();
  Writer w(out);
  eth_header(w, l2, kEtherArp);
  w.u16(1);
  w.u16(kEtherIpv4);
  w.u8(6);
  w.u8(4);
  w.u16(2);
  w.mac(l2.src);
  w.u32(sender_ip);
  w.mac(l2.dst);
  w.u32(target_ip);
}

void build_tcp(std::vector<std::byte>& out, const L2& l2, const TcpOut& t, Bytes payload) {
  out.clear();
  out.reserve(kEthHeader + kIpv4Header + kTcpHeader + 8 + payload.size());
  Writer w(out);
  size_t opt_len = (t.mss ? 4 : 0) + (t.wscale ? 4 : 0);
  size_t seg_len = kTcpHeader + opt_len + payload.size();
  eth_header(w, l2, kEtherIpv4);
  ipv4_header(w, t.src, t.dst, kProtoTcp, seg_len);
  size_t at = w.size();
  w.u16(t.sport);
  w.u16(t.dport);
  w.u32(t.seq);
  w.u32(t.ack);
  w.u8(static_cast<uint8_t>(((kTcpHeader + opt_len) / 4) << 4));
  w.u8(t.flags);
  w.u16(t.window);
  w.u16(0);
  w.u16(0);
  if (t.mss) {
    w.u8(2);
    w.u8(4);
    w.u16(*t.mss);
  }
  if (t.wscale) {
    w.u8(1);
    w.u8(3);
    w.u8(3);
    w.u8(*t.wscale);
  }
  w.bytes(payload);
  uint32_t sum = pseudo_header_sum(t.src, t.dst, kProtoTcp, seg_len);
  w.put16(at + 16, checksum_fold(checksum_add(sum, w.from(at))));
}

void build_udp(std::vector<std::byte>& out, const L2& l2, Ip4 src, Ip4 dst, uint16_t sport,
               uint16_t dport, Bytes payload) {
  out.clear();
  Writer w(out);
  size_t len = kUdpHeader + payload.size();
  eth_header(w, l2, kEtherIpv4);
  ipv4_header(w, src, dst, kProtoUdp, len);
  size_t at = w.size();
  w.u16(sport);
  w.u16(dport);
  w.u16(static_cast<uint16_t>(len));
  w.u16(0);
  w.bytes(payload);
  uint16_t sum =
      checksum_fold(checksum_add(pseudo_header_sum(src, dst, kProtoUdp, len), w.from(at)));
  w.put16(at + 6, sum == 0 ? 0xffff : sum);
}

void build_icmp_echo_reply(std::vector<std::byte>& out, const L2& l2, Ip4 src, Ip4 dst, uint16_t id,
                           uint16_t seq, Bytes payload) {
  out.clear();
  Writer w(out);
  eth_header(w, l2, kEtherIpv4);
  ipv4_header(w, src, dst, kProtoIcmp, 8 + payload.size());
  size_t at = w.size();
  w.u8(0);
  w.u8(0);
  w.u16(0);
  w.u16(id);
  w.u16(seq);
  w.bytes(payload);
  w.put16(at + 2, checksum_fold(checksum_add(0, w.from(at))));
}

std::string ip4_to_string(Ip4 a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

}  // namespace agentbox::net
