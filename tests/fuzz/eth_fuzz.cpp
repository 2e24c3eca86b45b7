// Fuzz target: an arbitrary frame through the Ethernet parser and every parser below it.
#include <cstddef>
#include <cstdint>

#include "agentbox/net/wire.hpp"

using namespace agentbox::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes frame(reinterpret_cast<const std::byte*>(data), size);
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
