// The box's end of the network: a tap device in the box's own network namespace, configured
// with libnl (no `ip` binary): address, MTU, link up, default route via the gateway.
//
// Theory of operation (apply() runs in the box's init, see sandbox/box_network.hpp):
//   1. IPv6 off for new links: `net.ipv6.conf.default.disable_ipv6 = 1`, so the tap never gets
//      a link-local address and sends no router solicitations or MLD reports (the stack speaks
//      IPv4 only; it would drop them anyway). `lo` keeps ::1: loopback inside the box is harmless.
//      Best effort: a kernel without IPv6 or a read-only /proc/sys leaves nothing to turn off, or
//      the stack's drop of every IPv6 frame as the second line.
//   2. `net.ipv4.ping_group_range = GID GID`: the box's programs may open unprivileged ICMP echo
//      sockets (ping the gateway); the stack answers echo to the gateway and DNS addresses and
//      drops every other ICMP frame. Best effort too.
//   3. open(/dev/net/tun) + TUNSETIFF(IFF_TAP | IFF_NO_PI, and IFF_VNET_HDR with `offload`): the
//      device is created in the netns of the process that opened the fd, which is why this runs
//      inside the box and not in the supervisor. TUNSETIFF needs CAP_NET_ADMIN over that netns,
//      which init has in its user ns. With `offload`, TUNSETOFFLOAD(TUN_F_CSUM) too (best effort):
//      checksums are left partial both ways (see net::FdTap); whoever reads the fd must then use
//      FdTap(fd, /*vnet_hdr=*/true) and StackConfig::tap_offload.
//   4. netlink (NETLINK_ROUTE, libnl-route-3): MTU and IFF_UP; ADDRESS/PREFIX; default route
//      via GATEWAY. The DNS address sits in the same /24 and is answered by the stack (ARP too).
// The tap fd is O_CLOEXEC; non-blocking is set by the supervisor once it holds it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "agentbox/base/result.hpp"
#include "agentbox/net/wire.hpp"

namespace agentbox::net {

struct TapSpec {
  std::string name = "eth0";
  Ip4 address = ip4(10, 0, 2, 100);
  int prefix = 24;
  Ip4 gateway = ip4(10, 0, 2, 2);
  uint32_t mtu = 65520;
  std::optional<unsigned> ping_gid;  // the box's gid: may open ICMP echo sockets
  bool offload = false;  // IFF_VNET_HDR + checksum offload (the reader must speak virtio_net_hdr)
};

enum class TapStep : uint8_t { kNone, kOpenTun, kCreate, kConfigure };

struct TapResult {
  TapStep step = TapStep::kNone;
  int err = 0;  // errno; 0 on success
  int fd = -1;  // the tap, on success
};

// Prepared in the supervisor (strings built, spec checked); applied in the box's init.
class TapSetup {
 public:
  [[nodiscard]] static base::Result<TapSetup> prepare(const TapSpec& spec);
  // In the box's network namespace. `host_root` prefixes /dev/net/tun and /proc/sys ("" when the
  // host's root is the current one, "/oldroot" in init after its first pivot).
  [[nodiscard]] TapResult apply(const char* host_root) const noexcept;
  [[nodiscard]] const TapSpec& spec() const { return spec_; }

 private:
  explicit TapSetup(TapSpec spec) : spec_(std::move(spec)) {}
  TapSpec spec_;
  std::string ping_range_;  // "GID GID\n"
};

}  // namespace agentbox::net
