// The host's interface addresses for the egress policy, kept current through netlink.
//
// Theory of operation: create() opens a libnl cache manager for "route/addr" (it joins the
// RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR groups before it dumps, so no change falls between
// the dump and the subscription) and watches its socket on the supervisor's event::Loop. Every
// RTM_NEWADDR / RTM_DELADDR the kernel announces updates the cache; the set handed to
// policy::EgressPolicy is rebuilt from it at once, on the loop's thread, which is the thread every
// egress decision runs on. When the kernel drops announcements (ENOBUFS on a full socket) the
// cache is dumped again. A failure to set up is an error: the session must not run blind to the
// host's own addresses.
#pragma once

#include <memory>

#include "agentbox/base/result.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/policy/host_addrs.hpp"

namespace agentbox::net {

class HostAddrWatch {
 public:
  [[nodiscard]] static base::Result<std::unique_ptr<HostAddrWatch>> create(event::Loop& loop);
  ~HostAddrWatch();
  HostAddrWatch(const HostAddrWatch&) = delete;
  HostAddrWatch& operator=(const HostAddrWatch&) = delete;

  // Live: updated in place as the kernel reports changes.
  [[nodiscard]] std::shared_ptr<const policy::HostAddrs> addrs() const { return addrs_; }

  struct Nl;

 private:
  explicit HostAddrWatch(event::Loop& loop);
  void on_ready() noexcept;
  void rebuild() noexcept;

  event::Loop& loop_;
  event::WatchId watch_ = 0;
  std::unique_ptr<Nl> nl_;
  std::shared_ptr<policy::HostAddrs> addrs_ = std::make_shared<policy::HostAddrs>();
};

}  // namespace agentbox::net
