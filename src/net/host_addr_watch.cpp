// HostAddrWatch: a libnl "route/addr" cache on the event loop -> policy::HostAddrs.
#include "agentbox/net/host_addr_watch.hpp"

#include <fmt/core.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstring>

#include "agentbox/base/log.hpp"

namespace agentbox::net {

using base::Error;
using base::Result;

struct HostAddrWatch::Nl {
  ~Nl() {
    if (mngr != nullptr) {
      nl_cache_mngr_free(mngr);  // frees its caches too
    }
    if (sync != nullptr) {
      nl_socket_free(sync);
    }
  }
  nl_cache_mngr* mngr = nullptr;
  nl_cache* cache = nullptr;  // owned by mngr
  nl_sock* sync = nullptr;    // a second socket for a full re-dump after ENOBUFS
};

namespace {

Error nl_error(int rc, std::string_view what) {
  return Error::msg(fmt::format("netlink: {}: {}", what, nl_geterror(rc)));
}

void on_change(nl_cache*, nl_object*, int, void*) {}  // the set is rebuilt after each batch

void collect(nl_object* obj, void* arg) {
  auto* out = static_cast<std::vector<policy::HostAddrs::Entry>*>(arg);
  auto* addr = reinterpret_cast<rtnl_addr*>(obj);  // libnl's object model: a cache of rtnl_addr
  nl_addr* local = rtnl_addr_get_local(addr);
  if (local == nullptr) {
    return;
  }
  policy::IpAddr a;
  const int family = nl_addr_get_family(local);
  const unsigned len = nl_addr_get_len(local);
  if (family == AF_INET && len == 4) {
    a.family = policy::IpAddr::Family::kV4;
  } else if (family == AF_INET6 && len == 16) {
    a.family = policy::IpAddr::Family::kV6;
  } else {
    return;
  }
  std::memcpy(a.bytes.data(), nl_addr_get_binary_addr(local), len);
  const int max = a.is_v4() ? 32 : 128;
  int prefix = rtnl_addr_get_prefixlen(addr);
  prefix = prefix < 0 || prefix > max ? max : prefix;
  auto net = policy::Cidr::parse(fmt::format("{}/{}", a.to_string(), prefix));
  out->push_back({.addr = a, .net = net ? *net : policy::Cidr{a, max}});
}

}  // namespace

HostAddrWatch::HostAddrWatch(event::Loop& loop) : loop_(loop), nl_(std::make_unique<Nl>()) {}

HostAddrWatch::~HostAddrWatch() {
  loop_.unwatch(watch_);
}

Result<std::unique_ptr<HostAddrWatch>> HostAddrWatch::create(event::Loop& loop) {
  std::unique_ptr<HostAddrWatch> w(new HostAddrWatch(loop));
  Nl& nl = *w->nl_;
  if (int rc = nl_cache_mngr_alloc(nullptr, NETLINK_ROUTE, NL_AUTO_PROVIDE, &nl.mngr); rc < 0) {
    return nl_error(rc, "address cache manager");
  }
  if (int rc = nl_cache_mngr_add(nl.mngr, "route/addr", &on_change, nullptr, &nl.cache); rc < 0) {
    return nl_error(rc, "watch interface addresses");
  }
  nl.sync = nl_socket_alloc();
  if (nl.sync == nullptr) {
    return Error::msg("netlink: cannot allocate a socket");
  }
  if (int rc = nl_connect(nl.sync, NETLINK_ROUTE); rc < 0) {
    return nl_error(rc, "connect");
  }
  w->rebuild();
  auto* raw = w.get();
  AGENTBOX_ASSIGN_OR_RETURN(w->watch_, loop.watch_fd(nl_cache_mngr_get_fd(nl.mngr), EPOLLIN,
                                                     [raw](uint32_t) { raw->on_ready(); }));
  return w;
}

void HostAddrWatch::on_ready() noexcept {
  int rc = nl_cache_mngr_data_ready(nl_->mngr);
  if (rc < 0) {
    // Announcements were lost (ENOBUFS): the cache may miss an address. Dump it again.
    base::log::debug("host addresses: netlink: {}; dumping again", nl_geterror(rc));
    if (int r = nl_cache_refill(nl_->sync, nl_->cache); r < 0) {
      base::log::warn("host addresses: netlink dump failed: {}", nl_geterror(r));
    }
  }
  rebuild();
}

void HostAddrWatch::rebuild() noexcept {
  std::vector<policy::HostAddrs::Entry> entries;
  nl_cache_foreach(nl_->cache, &collect, &entries);
  base::log::debug("host addresses: {} known", entries.size());
  addrs_->replace(std::move(entries));
}

}  // namespace agentbox::net
