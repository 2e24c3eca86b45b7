// Fuzz target: an arbitrary frame through the Ethernet parser and every parser below it. The IPv4
// and transport checksums are repaired first (sums.hpp) so mutations reach the parsers below.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbox/net/wire.hpp"
#include "sums.hpp"

using namespace agentbox::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes = agentbox::fuzz::copy(data, size);
  agentbox::fuzz::fix_frame(bytes);
  Bytes frame(bytes);
  auto e = parse_ethernet(frame);
  if (!e) {
    return 0;
  }
  if (e->type == kEtherArp) {
    (void)parse_arp(e->payload);
    return 0;
  }
  auto ip = parse_ipv4(e->payload);
  if (!ip) {
    return 0;
  }
  switch (ip->proto) {
    case kProtoTcp:
      (void)parse_tcp(ip->payload, ip->src, ip->dst);
      break;
    case kProtoUdp:
      (void)parse_udp(ip->payload, ip->src, ip->dst);
      break;
    case kProtoIcmp:
      (void)parse_icmp_echo(ip->payload);
      break;
    default:
      break;
  }
  return 0;
}
