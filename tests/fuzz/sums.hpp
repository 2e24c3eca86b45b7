// Checksum repair for the packet fuzz targets: libFuzzer's mutations almost never keep an RFC 1071
// sum right, so without this nearly every input stops at the first checksum check. Each function
// rewrites the sum fields of the (possibly mutated) bytes in place, bounded by the buffer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbox/net/wire.hpp"

namespace agentbox::fuzz {

inline void put16(std::vector<std::byte>& b, size_t at, uint16_t v) {
  b[at] = std::byte{static_cast<uint8_t>(v >> 8)};
  b[at + 1] = std::byte{static_cast<uint8_t>(v)};
}

inline uint16_t get16(const std::vector<std::byte>& b, size_t at) {
  return static_cast<uint16_t>((std::to_integer<uint16_t>(b[at]) << 8) |
                               std::to_integer<uint16_t>(b[at + 1]));
}

// The sum field at `off + field` of the `len` bytes at `off`, over a pseudo-header for `proto`
// (0: none, as ICMP). A UDP sum of 0 means "none" and is kept, so that path is fuzzed too.
inline void fix_l4(std::vector<std::byte>& b, size_t off, size_t len, net::Ip4 src, net::Ip4 dst,
                   uint8_t proto) {
  size_t field = proto == net::kProtoTcp ? 16 : proto == net::kProtoUdp ? 6 : 2;
  if (off + len > b.size() || len < field + 2) {
    return;
  }
  if (proto == net::kProtoUdp) {
    if (get16(b, off + field) == 0) {
      return;
    }
    len = std::min<size_t>(len, get16(b, off + 4));  // the sum covers the length field's bytes
    if (len < field + 2) {
      return;
    }
  }
  put16(b, off + field, 0);
  uint32_t start = proto == 0 ? 0 : net::pseudo_header_sum(src, dst, proto, len);
  uint16_t sum = net::checksum_fold(net::checksum_add(start, net::Bytes(b).subspan(off, len)));
  put16(b, off + field, proto == net::kProtoUdp && sum == 0 ? 0xffff : sum);
}

// An IPv4 packet at `off`: the header sum, then the TCP, UDP or ICMP sum of its payload (as far
// as the total length and the buffer reach).
inline void fix_ipv4(std::vector<std::byte>& b, size_t off) {
  if (b.size() < off + 20) {
    return;
  }
  size_t ihl = (std::to_integer<size_t>(b[off]) & 0xf) * 4;
  if (ihl < 20 || off + ihl > b.size()) {
    return;
  }
  put16(b, off + 10, 0);
  put16(b, off + 10, net::checksum_fold(net::checksum_add(0, net::Bytes(b).subspan(off, ihl))));
  size_t total = std::min<size_t>(get16(b, off + 2), b.size() - off);
  if (total <= ihl) {
    return;
  }
  auto u32 = [&](size_t at) { return net::Ip4{get16(b, at)} << 16 | get16(b, at + 2); };
  auto proto = std::to_integer<uint8_t>(b[off + 9]);
  uint8_t pseudo = proto == net::kProtoIcmp ? 0 : proto;
  if (proto == net::kProtoTcp || proto == net::kProtoUdp || proto == net::kProtoIcmp) {
    fix_l4(b, off + ihl, total - ihl, u32(off + 12), u32(off + 16), pseudo);
  }
}

// An Ethernet frame: its IPv4 packet, if it carries one.
inline void fix_frame(std::vector<std::byte>& b) {
  if (b.size() >= net::kEthHeader && get16(b, 12) == net::kEtherIpv4) {
    fix_ipv4(b, net::kEthHeader);
  }
}

inline std::vector<std::byte> copy(const uint8_t* data, size_t size) {
  const auto* p = reinterpret_cast<const std::byte*>(data);
  return {p, p + size};
}

}  // namespace agentbox::fuzz
