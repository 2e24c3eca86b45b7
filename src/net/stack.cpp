// Frame dispatch for the tap link: ARP, ICMP echo, DNS, TCP; everything else dropped and audited.
#include "agentbox/net/stack.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "agentbox/base/sys.hpp"

namespace agentbox::net {

namespace {
constexpr size_t kMaxDropKinds = 4096;

// struct virtio_net_hdr of <linux/virtio_net.h> (that header does not compile as C++).
struct VnetHdr {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
static_assert(sizeof(VnetHdr) == 10);
constexpr uint8_t kVnetNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kVnetDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
}  // namespace

base::Result<size_t> FdTap::read_frame(std::span<std::byte> buf) {
  VnetHdr hdr;
  iovec iov[2] = {{&hdr, sizeof hdr}, {buf.data(), buf.size()}};
  int first = vnet_hdr_ ? 0 : 1;
  ssize_t n = base::retry_eintr([&] { return ::readv(fd_.get(), iov + first, 2 - first); });
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return size_t{0};
    }
    return base::Error::sys(errno, "read", "tap");
  }
  last_ok_ = false;
  if (vnet_hdr_) {
    if (static_cast<size_t>(n) < sizeof hdr) {
      return base::Error::msg("tap: frame shorter than its virtio_net_hdr");
    }
    n -= static_cast<ssize_t>(sizeof hdr);
    last_ok_ = (hdr.flags & (kVnetNeedsCsum | kVnetDataValid)) != 0;
  }
  return static_cast<size_t>(n);
}

void FdTap::send_frame(Bytes frame) {
  // IPv4/TCP frames go with NEEDS_CSUM: the translator left their checksum partial
  // (StackConfig::tap_offload), and the box's kernel delivers a CHECKSUM_PARTIAL packet locally
  // without summing it (DATA_VALID would be ignored by tun). Other frames carry full checksums.
  VnetHdr hdr;
  if (vnet_hdr_ && frame.size() >= kEthHeader + kIpv4Header && frame[12] == std::byte{0x08} &&
      frame[13] == std::byte{0x00} && frame[kEthHeader + 9] == std::byte{kProtoTcp}) {
    size_t ihl = (std::to_integer<size_t>(frame[kEthHeader]) & 0x0f) * 4;
    hdr.flags = kVnetNeedsCsum;
    hdr.csum_start = static_cast<uint16_t>(kEthHeader + ihl);
    hdr.csum_offset = 16;  // TCP checksum field
  }
  iovec iov[2] = {{&hdr, sizeof hdr}, {const_cast<std::byte*>(frame.data()), frame.size()}};
  int first = vnet_hdr_ ? 0 : 1;
  size_t want = frame.size() + (vnet_hdr_ ? sizeof hdr : 0);
  // A full tap queue drops the frame, as a wire would; TCP retransmits.
  if (::writev(fd_.get(), iov + first, 2 - first) != static_cast<ssize_t>(want)) {
    ++write_errors_;
  }
}

Stack::Stack(StackConfig config, const policy::EgressPolicy& policy, FlowHandler& handler,
             Poller& poller, FrameSink& sink, audit::Sink& audit)
    : config_(config),
      sink_(sink),
      audit_(audit),
      dns_(policy, pool_, audit),
      tcp_(
          [&] {
            TcpConfig t = config.tcp;
            t.box_ip = config.box_ip;
            t.gateway_mac = config.gateway_mac;
            t.mtu = config.mtu;
            t.tx_checksum = !config.tap_offload;
            return t;
          }(),
          policy, pool_, handler, poller, sink, audit),
      rx_size_(config.mtu + kEthHeader + 64),
      rx_(std::make_unique_for_overwrite<std::byte[]>(rx_size_)) {}

void Stack::use_approver(policy::Approver* approver) {
  tcp_.use_once_grants(approver != nullptr ? &once_ : nullptr);
  dns_.use_approver(approver, &once_, [this](const ReplyTo& to, Bytes reply) {
    build_udp(frame_, L2{.src = config_.gateway_mac, .dst = to.mac}, config_.dns_ip, to.ip, 53,
              to.port, reply);
    sink_.send_frame(frame_);
  });
}

base::Result<size_t> Stack::drain(Tap& tap, Clock::time_point now, size_t budget) {
  size_t handled = 0;
  tcp_.begin_batch();  // one ACK per flow for the whole batch
  base::Result<size_t> r = size_t{0};
  while (handled < budget) {
    std::span<std::byte> rx(rx_.get(), rx_size_);
    r = tap.read_frame(rx);
    if (!r || *r == 0) {
      break;
    }
    on_frame(Bytes(rx).first(*r), now, tap.last_frame_checksum_ok());
    ++handled;
  }
  tcp_.end_batch();
  if (!r) {
    return std::move(r).error();
  }
  return handled;
}

void Stack::on_frame(Bytes frame, Clock::time_point now, bool checksum_ok) {
  ++counters_.frames_in;
  auto eth = parse_ethernet(frame);
  if (!eth) {
    ++counters_.malformed;
    return;
  }
  switch (eth->type) {
    case kEtherArp:
      on_arp(*eth);
      return;
    case kEtherIpv4:
      on_ipv4(*eth, now, checksum_ok);
      return;
    case kEtherIpv6:
      drop("ipv6", 0, 0);
      return;
    default:
      drop("ethertype", eth->type, 0);
      return;
  }
}

void Stack::on_arp(const Ethernet& eth) {
  auto arp = parse_arp(eth.payload);
  if (!arp) {
    ++counters_.malformed;
    return;
  }
  if (arp->op != 1 || (arp->tpa != config_.gateway_ip && arp->tpa != config_.dns_ip)) {
    return;  // gratuitous ARP, probes for other addresses: nothing to say
  }
  build_arp_reply(frame_, L2{.src = config_.gateway_mac, .dst = arp->sha}, arp->tpa, arp->spa);
  ++counters_.arp_replies;
  sink_.send_frame(frame_);
}

void Stack::on_ipv4(const Ethernet& eth, Clock::time_point now, bool checksum_ok) {
  auto ip = parse_ipv4(eth.payload);
  if (!ip) {
    ++counters_.malformed;
    return;
  }
  L2 reply{.src = config_.gateway_mac, .dst = eth.src};
  switch (ip->proto) {
    case kProtoTcp: {
      auto tcp = parse_tcp(ip->payload, ip->src, ip->dst, !checksum_ok);
      if (!tcp) {
        ++counters_.malformed;
        return;
      }
      tcp_.on_segment(*ip, *tcp, eth.src, now);
      return;
    }
    case kProtoUdp: {
      auto udp = parse_udp(ip->payload, ip->src, ip->dst, !checksum_ok);
      if (!udp) {
        ++counters_.malformed;
        return;
      }
      if (ip->dst != config_.dns_ip || udp->dport != 53 || ip->src != config_.box_ip) {
        drop("udp", ip->dst, udp->dport);
        return;
      }
      ++counters_.dns_queries;
      ReplyTo to{.mac = eth.src, .ip = ip->src, .port = udp->sport};
      auto answer = dns_.answer(udp->payload, &to);
      if (!answer.empty()) {
        build_udp(frame_, reply, ip->dst, ip->src, 53, udp->sport, answer);
        sink_.send_frame(frame_);
      }
      return;
    }
    case kProtoIcmp: {
      auto echo = parse_icmp_echo(ip->payload);
      if (echo && echo->type == 8 && (ip->dst == config_.gateway_ip || ip->dst == config_.dns_ip)) {
        build_icmp_echo_reply(frame_, reply, ip->dst, ip->src, echo->id, echo->seq, echo->payload);
        ++counters_.icmp_replies;
        sink_.send_frame(frame_);
        return;
      }
      drop("icmp", ip->dst, 0);
      return;
    }
    default:
      drop("ip", ip->dst, ip->proto);
      return;
  }
}

void Stack::drop(std::string_view proto, Ip4 dst, uint16_t port) {
  ++counters_.dropped;
  auto key = std::tuple(std::string(proto), dst, port);
  if (drops_seen_.size() >= kMaxDropKinds || !drops_seen_.insert(key).second) {
    return;  // audit each kind of drop once; the counter has the volume
  }
  audit_.emit(audit::Event("net.drop")
                  .str("proto", proto)
                  .str("dst", ip4_to_string(dst))
                  .num("port", port));
}

}  // namespace agentbox::net
