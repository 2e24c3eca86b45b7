// The tap device inside the box: TUNSETIFF, then libnl for MTU, link state, address and route.
// (Theory of operation: include/agentbox/net/tap_setup.hpp.)
#include "agentbox/net/tap_setup.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace agentbox::net {

namespace {

// "/oldroot" + "/dev/net/tun" into a fixed buffer: no allocation for a path.
struct Path {
  char buf[256] = {};
  Path(const char* root, const char* rest) {
    size_t a = std::strlen(root);
    size_t b = std::strlen(rest);
    if (a + b + 1 > sizeof buf) {
      return;  // empty path: open fails with ENOENT
    }
    std::memcpy(buf, root, a);
    std::memcpy(buf + a, rest, b + 1);
  }
};

void write_sysctl(const char* root, const char* rest, const char* value, size_t len) {
  Path path(root, rest);
  int fd = ::open(path.buf, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    [[maybe_unused]] ssize_t n = ::write(fd, value, len);
    ::close(fd);
  }
}

// libnl reports its own NLE_* codes; the launcher's report carries an errno.
int nl_to_errno(int nle) {
  switch (nle < 0 ? -nle : nle) {
    case NLE_PERM:
      return EPERM;
    case NLE_NOACCESS:
      return EACCES;
    case NLE_NOMEM:
      return ENOMEM;
    case NLE_EXIST:
      return EEXIST;
    case NLE_NODEV:
    case NLE_OBJ_NOTFOUND:
      return ENODEV;
    case NLE_INVAL:
      return EINVAL;
    case NLE_BUSY:
      return EBUSY;
    case NLE_RANGE:
      return ERANGE;
    case NLE_OPNOTSUPP:
      return EOPNOTSUPP;
    case NLE_AF_NOSUPPORT:
      return EAFNOSUPPORT;
    case NLE_AGAIN:
      return EAGAIN;
    default:
      return EIO;
  }
}

nl_addr* v4_addr(Ip4 a, int prefix) {
  uint32_t be = htonl(a);
  nl_addr* addr = nl_addr_build(AF_INET, &be, sizeof be);
  if (addr != nullptr) {
    nl_addr_set_prefixlen(addr, prefix);
  }
  return addr;
}

// MTU + up, address, default route. Returns 0 or an errno.
int configure(const TapSpec& spec) {
  nl_sock* sk = nl_socket_alloc();
  if (sk == nullptr) {
    return ENOMEM;
  }
  rtnl_link* link = nullptr;
  rtnl_link* change = nullptr;
  rtnl_addr* addr = nullptr;
  nl_addr* local = nullptr;
  rtnl_route* route = nullptr;
  nl_addr* dst = nullptr;
  nl_addr* gw = nullptr;
  int rc = nl_connect(sk, NETLINK_ROUTE);
  if (rc == 0) {
    rc = rtnl_link_get_kernel(sk, 0, spec.name.c_str(), &link);
  }
  int ifindex = link != nullptr ? rtnl_link_get_ifindex(link) : 0;
  if (rc == 0) {
    change = rtnl_link_alloc();
    rc = change == nullptr ? -NLE_NOMEM : 0;
  }
  if (rc == 0) {
    rtnl_link_set_mtu(change, spec.mtu);
    rtnl_link_set_flags(change, IFF_UP);
    rc = rtnl_link_change(sk, link, change, 0);
  }
  if (rc == 0) {
    addr = rtnl_addr_alloc();
    local = v4_addr(spec.address, spec.prefix);
    rc = addr == nullptr || local == nullptr ? -NLE_NOMEM : 0;
  }
  if (rc == 0) {
    rtnl_addr_set_ifindex(addr, ifindex);
    rc = rtnl_addr_set_local(addr, local);
  }
  if (rc == 0) {
    rc = rtnl_addr_add(sk, addr, 0);
  }
  if (rc == 0) {
    route = rtnl_route_alloc();
    dst = v4_addr(0, 0);
    gw = v4_addr(spec.gateway, 32);
    rc = route == nullptr || dst == nullptr || gw == nullptr ? -NLE_NOMEM : 0;
  }
  if (rc == 0) {
    rtnl_route_set_family(route, AF_INET);
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_scope(route, RT_SCOPE_UNIVERSE);
    rtnl_route_set_protocol(route, RTPROT_STATIC);
    rc = rtnl_route_set_dst(route, dst);
  }
  if (rc == 0) {
    rtnl_nexthop* nh = rtnl_route_nh_alloc();
    if (nh == nullptr) {
      rc = -NLE_NOMEM;
    } else {
      rtnl_route_nh_set_ifindex(nh, ifindex);
      rtnl_route_nh_set_gateway(nh, gw);
      rtnl_route_add_nexthop(route, nh);  // the route owns it now
      rc = rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_EXCL);
    }
  }
  int err = rc == 0 ? 0 : nl_to_errno(rc);
  nl_addr_put(gw);
  nl_addr_put(dst);
  rtnl_route_put(route);
  nl_addr_put(local);
  rtnl_addr_put(addr);
  rtnl_link_put(change);
  rtnl_link_put(link);
  nl_socket_free(sk);
  return err;
}

}  // namespace

base::Result<TapSetup> TapSetup::prepare(const TapSpec& spec) {
  if (spec.name.empty() || spec.name.size() >= IFNAMSIZ) {
    return base::Error::msg(fmt::format("bad interface name `{}`", spec.name));
  }
  if (spec.prefix < 1 || spec.prefix > 30 || spec.mtu < 576 || spec.mtu > 65535) {
    return base::Error::msg("bad tap address prefix or MTU");
  }
  TapSetup t(spec);
  if (spec.ping_gid) {
    t.ping_range_ = fmt::format("{0} {0}\n", *spec.ping_gid);
  }
  return t;
}

TapResult TapSetup::apply(const char* host_root) const noexcept {
  static constexpr char kOne[] = "1\n";
  write_sysctl(host_root, "/proc/sys/net/ipv6/conf/default/disable_ipv6", kOne, sizeof kOne - 1);
  if (!ping_range_.empty()) {
    write_sysctl(host_root, "/proc/sys/net/ipv4/ping_group_range", ping_range_.data(),
                 ping_range_.size());
  }
  Path tun(host_root, "/dev/net/tun");
  int fd = ::open(tun.buf, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return {TapStep::kOpenTun, errno, -1};
  }
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, spec_.name.c_str(), spec_.name.size() + 1);
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (spec_.offload ? IFF_VNET_HDR : 0));
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    ::close(fd);
    return {TapStep::kCreate, err, -1};
  }
  if (spec_.offload) {
    // The box's kernel may then hand over TCP/UDP with partial checksums (NEEDS_CSUM). Best
    // effort: without it the box sums them itself, and the vnet header is there all the same.
    (void)::ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM);
  }
  if (int err = configure(spec_); err != 0) {
    ::close(fd);
    return {TapStep::kConfigure, err, -1};
  }
  // Persistent: closing the last fd then does not unregister the device synchronously (an RCU
  // wait of ~10 ms in the supervisor's exit path, half of `agentbox run -- true`); it dies with
  // the box's network namespace in the kernel's asynchronous cleanup. Best effort.
  (void)::ioctl(fd, TUNSETPERSIST, 1);
  return {TapStep::kNone, 0, fd};
}

}  // namespace agentbox::net
