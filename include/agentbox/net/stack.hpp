// The box's network as the supervisor serves it: frames in from the tap, frames out.
//
// Theory of operation: each frame from the box is parsed (wire.hpp) and dispatched:
//   ARP who-has for the gateway or the DNS address  -> ARP reply with the gateway MAC
//   ICMP echo to the gateway or DNS address         -> echo reply (nothing is forwarded)
//   UDP to the DNS address, port 53                 -> DnsResponder, reply
//   TCP                                             -> TcpTranslator (policy, FlowHandler)
//   everything else (other UDP, ICMP elsewhere, IPv6, fragments, other ethertypes)
//                                                   -> dropped, counted, "net.drop" audited
// Malformed frames are counted and dropped; nothing from the box can stop the stack.
#pragma once

#include <memory>
#include <set>
#include <tuple>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/net/dns.hpp"
#include "agentbox/net/tcp.hpp"

namespace agentbox::net {

struct StackConfig {
  Ip4 box_ip = ip4(10, 0, 2, 100);
  Ip4 gateway_ip = ip4(10, 0, 2, 2);
  Ip4 dns_ip = ip4(10, 0, 2, 3);
  Mac gateway_mac = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
  uint32_t mtu = 65520;
  // The tap is an FdTap with vnet_hdr: TCP frames to the box go without a checksum.
  bool tap_offload = false;
  TcpConfig tcp;
};

struct StackCounters {
  uint64_t frames_in = 0;
  uint64_t malformed = 0;
  uint64_t arp_replies = 0;
  uint64_t icmp_replies = 0;
  uint64_t dns_queries = 0;
  uint64_t dropped = 0;
};

// The tap device (or a fake): reads one frame per call, writes one frame per call.
class Tap : public FrameSink {
 public:
  // Bytes read into `buf`; 0 when no frame is waiting (EAGAIN).
  [[nodiscard]] virtual base::Result<size_t> read_frame(std::span<std::byte> buf) = 0;
  // The frame last read needs no TCP/UDP checksum verification (offload said so).
  [[nodiscard]] virtual bool last_frame_checksum_ok() const { return false; }
};

// A real tap fd (IFF_TAP | IFF_NO_PI, O_NONBLOCK): one read(2)/write(2) per frame.
//
// With `vnet_hdr` the tap was created with IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM): every
// frame carries a 10-byte virtio_net_hdr. The box's kernel then hands TCP/UDP over with a
// partial checksum (NEEDS_CSUM) instead of summing every byte, and the stack's TCP frames go to
// the box the same way (partial, NEEDS_CSUM; a locally delivered CHECKSUM_PARTIAL packet is never
// summed): the box's kernel and the stack each skip a pass over every byte. Requires
// StackConfig::tap_offload (the translator then leaves TCP checksums partial). No GSO.
class FdTap final : public Tap {
 public:
  explicit FdTap(base::UniqueFd fd, bool vnet_hdr = false)
      : fd_(std::move(fd)), vnet_hdr_(vnet_hdr) {}
  [[nodiscard]] base::Result<size_t> read_frame(std::span<std::byte> buf) override;
  [[nodiscard]] bool last_frame_checksum_ok() const override { return last_ok_; }
  void send_frame(Bytes frame) override;
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] bool vnet_hdr() const { return vnet_hdr_; }
  [[nodiscard]] uint64_t write_errors() const { return write_errors_; }

 private:
  base::UniqueFd fd_;
  bool vnet_hdr_ = false;
  bool last_ok_ = false;
  uint64_t write_errors_ = 0;
};

class Stack {
 public:
  Stack(StackConfig config, const policy::EgressPolicy& policy, FlowHandler& handler,
        Poller& poller, FrameSink& sink, audit::Sink& audit);

  // `checksum_ok`: the tap vouches for the TCP/UDP checksum (offload); skip verifying it.
  void on_frame(Bytes frame, Clock::time_point now, bool checksum_ok = false);
  // Reads and handles up to `budget` frames; returns how many (so the loop can stay fair).
  base::Result<size_t> drain(Tap& tap, Clock::time_point now, size_t budget = 64);

  // Approvals: names the policy says to ask about wait for `approver` (dns.hpp, step 6); a
  // name admitted once may then open one connection (OnceGrants). Null: nobody is asked.
  void use_approver(policy::Approver* approver);
  [[nodiscard]] const DnsResponder& dns() const { return dns_; }

  [[nodiscard]] TcpTranslator& tcp() { return tcp_; }
  [[nodiscard]] SyntheticPool& pool() { return pool_; }
  [[nodiscard]] const StackCounters& counters() const { return counters_; }
  [[nodiscard]] const StackConfig& config() const { return config_; }

 private:
  void on_arp(const Ethernet& eth);
  void on_ipv4(const Ethernet& eth, Clock::time_point now, bool checksum_ok);
  void drop(std::string_view proto, Ip4 dst, uint16_t port);

  StackConfig config_;
  FrameSink& sink_;
  audit::Sink& audit_;
  SyntheticPool pool_;
  OnceGrants once_;
  DnsResponder dns_;
  TcpTranslator tcp_;
  std::vector<std::byte> frame_;
  // The receive buffer (an MTU of 65,520 with the tap's offloads), left uninitialised: zeroing it
  // cost 16 page faults at every box's start, where most boxes read small frames or none; a read
  // writes only what it returns, and only that is parsed.
  size_t rx_size_;
  std::unique_ptr<std::byte[]> rx_;
  std::set<std::tuple<std::string, Ip4, uint16_t>> drops_seen_;  // audit each kind once
  StackCounters counters_;
};

}  // namespace agentbox::net
