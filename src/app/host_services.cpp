// Host services: --host-port and --publish (theory: include/agentbox/app/host_services.hpp).
#include "agentbox/app/host_services.hpp"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>

#include "agentbox/base/log.hpp"
#include "agentbox/policy/connect_to.hpp"
#include "host_relay.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using base::UniqueFd;

namespace {

enum class Service { kHostPort, kPublish };

const char* service_name(Service s) {
  switch (s) {
    case Service::kHostPort:
      return "host_port";
    case Service::kPublish:
      return "publish";
  }
  return "?";
}

struct Mapping {
  uint16_t port = 0;     // where connections are accepted (box port / host port)
  uint16_t to_port = 0;  // where they go (host port / box port)
  config::Origin origin;
};

// A loopback socket address: 127.0.0.1 or ::1, `port`.
sockaddr_storage loopback(int family, uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  if (family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);  // NOLINT: the sockets ABI
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_loopback;
    *len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);  // NOLINT: the sockets ABI
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof(sockaddr_in);
  }
  return ss;
}

// A listening TCP socket on loopback `family`:`port`; -1 with errno. No heap (runs in init).
int listen_loopback(int family, uint16_t port) noexcept {
  int s = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) {
    return -1;
  }
  int one = 1;
  (void)::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6) {
    (void)::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  socklen_t len = 0;
  sockaddr_storage ss = loopback(family, port, &len);
  if (::bind(s, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(s, 128) != 0) {
    int err = errno;
    ::close(s);
    errno = err;
    return -1;
  }
  return s;
}

// The local port and family of a socket (the listener says which mapping it serves).
std::pair<int, uint16_t> local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return {AF_UNSPEC, 0};
  }
  if (ss.ss_family == AF_INET6) {
    return {AF_INET6, ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)};
  }
  return {ss.ss_family, ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)};
}

struct Conn {
  uint64_t id = 0;
  Service service = Service::kHostPort;
  uint16_t port = 0;
  uint16_t to_port = 0;
  int family = AF_INET;  // of the accepted side
  int attempt = 0;       // 0: 127.0.0.1, 1: ::1
  UniqueFd in;           // accepted
  UniqueFd out;          // connecting to the destination
  event::WatchId connect_watch = 0;
  std::unique_ptr<Relay> relay;
};

struct Counts {
  uint64_t conns = 0;
  uint64_t failed = 0;
};

}  // namespace

struct HostServices::Impl {
  std::vector<Mapping> host_ports;
  std::vector<Mapping> publish;
  std::vector<UniqueFd> publish_listeners;  // bound in create(), parallel to `publish`
  event::Loop* loop = nullptr;
  audit::Sink* audit = nullptr;
  std::vector<std::pair<UniqueFd, event::WatchId>> listeners;  // watched
  UniqueFd factory;
  event::WatchId factory_watch = 0;
  std::deque<uint64_t> awaiting_socket;  // publish connections waiting for init's socket
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;
  std::map<std::pair<Service, uint16_t>, Counts> counts;
  uint64_t next_id = 1;

  void on_listener(int fd, Service service, const Mapping& m);
  void pause_listener(int fd);
  void connect_next(Conn& c);
  void on_connected(uint64_t id);
  void on_factory();
  void end(uint64_t id, int err, std::string_view why);
};

HostServices::HostServices(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
// finish() ran before the loop went away (SessionNetwork::finish), as for the stack.
HostServices::~HostServices() = default;

namespace {

Result<std::vector<Mapping>> parse_list(const std::vector<config::Sourced<std::string>>& list,
                                        std::string_view key) {
  std::vector<Mapping> out;
  std::set<uint16_t> seen;
  for (const auto& item : list) {
    auto m = policy::parse_port_map(item.value);
    if (!m) {
      return Error::msg(
          fmt::format("{}: `{}`: {}", item.origin.describe(), item.value, m.error().message()));
    }
    if (!seen.insert(m->port).second) {
      return Error::msg(fmt::format("{}: `{}`: port {} is listed twice in {}",
                                    item.origin.describe(), item.value, m->port, key));
    }
    out.push_back({m->port, m->to_port, item.origin});
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<HostServices>> HostServices::create(const config::Policy& policy) {
  if (policy.host_ports.empty() && policy.publish.empty()) {
    return std::unique_ptr<HostServices>();
  }
  auto impl = std::make_unique<Impl>();
  AGENTBOX_ASSIGN_OR_RETURN(impl->host_ports, parse_list(policy.host_ports, "host ports"));
  AGENTBOX_ASSIGN_OR_RETURN(impl->publish, parse_list(policy.publish, "published ports"));
  if (impl->host_ports.size() > kMaxHostPorts) {
    return Error::msg(fmt::format("{}: at most {} host ports",
                                  impl->host_ports.back().origin.describe(), kMaxHostPorts));
  }
  // Published ports are bound now: a taken port fails before the box starts.
  for (const Mapping& m : impl->publish) {
    int s = listen_loopback(AF_INET, m.port);
    if (s < 0) {
      int err = errno;
      Error e = Error::sys(err, "listen", fmt::format("127.0.0.1:{}", m.port))
                    .context(fmt::format("{} `{}:{}`", m.origin.describe(), m.port, m.to_port));
      if (err == EADDRINUSE) {
        e.hint("another program listens there: choose another host port (--publish HOST:BOX)");
      }
      return e;
    }
    impl->publish_listeners.emplace_back(s);
  }
  return std::unique_ptr<HostServices>(new HostServices(std::move(impl)));
}

int HostServices::box_setup(sandbox::NetworkSetupResult& out) const noexcept {
  for (const Mapping& m : impl_->host_ports) {
    for (int family : {AF_INET, AF_INET6}) {
      int s = listen_loopback(family, m.port);
      if (s < 0) {
        // The box's lo may have no ::1 (a kernel without IPv6): 127.0.0.1 alone then.
        if (family == AF_INET6 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
          continue;
        }
        return errno;
      }
      if (out.extra_count >= sandbox::kMaxNetworkExtraFds) {
        ::close(s);
        return EMFILE;
      }
      out.extra[out.extra_count++] = s;
    }
  }
  return 0;
}

bool HostServices::needs_socket_factory() const {
  return !impl_->publish.empty();
}

std::vector<std::string> HostServices::describe() const {
  std::vector<std::string> out;
  for (const Mapping& m : impl_->host_ports) {
    out.push_back(
        fmt::format("host port: the box's localhost:{} -> the host's loopback port {} ({})", m.port,
                    m.to_port, m.origin.describe()));
  }
  for (const Mapping& m : impl_->publish) {
    out.push_back(fmt::format("publish: the host's 127.0.0.1:{} -> the box's localhost:{} ({})",
                              m.port, m.to_port, m.origin.describe()));
  }
  return out;
}

base::Status HostServices::start(event::Loop& loop, std::vector<UniqueFd> box_listeners,
                                 UniqueFd socket_factory, audit::Sink& sink) {
  Impl& im = *impl_;
  im.loop = &loop;
  im.audit = &sink;
  auto watch = [&](UniqueFd fd, Service service, const Mapping& m) -> base::Status {
    int raw = fd.get();
    AGENTBOX_ASSIGN_OR_RETURN(auto id,
                              loop.watch_fd(raw, EPOLLIN, [&im, raw, service, &m](uint32_t) {
                                im.on_listener(raw, service, m);
                              }));
    im.listeners.emplace_back(std::move(fd), id);
    return base::ok();
  };
  for (UniqueFd& fd : box_listeners) {
    uint16_t port = local_port(fd.get()).second;
    auto it = std::find_if(im.host_ports.begin(), im.host_ports.end(),
                           [&](const Mapping& m) { return m.port == port; });
    if (it == im.host_ports.end()) {
      return Error::msg(fmt::format("the box sent a listener on port {}, not a host port", port));
    }
    AGENTBOX_TRY(watch(std::move(fd), Service::kHostPort, *it));
  }
  for (size_t i = 0; i < im.publish.size(); ++i) {
    AGENTBOX_TRY(watch(std::move(im.publish_listeners[i]), Service::kPublish, im.publish[i]));
  }
  im.publish_listeners.clear();
  if (!im.publish.empty()) {
    if (!socket_factory) {
      return Error::msg("the box has no socket factory for --publish");
    }
    im.factory = std::move(socket_factory);
    AGENTBOX_ASSIGN_OR_RETURN(
        im.factory_watch,
        loop.watch_fd(im.factory.get(), EPOLLIN, [&im](uint32_t) { im.on_factory(); }));
  }
  for (const std::string& line : describe()) {
    base::log::debug("{}", line);
  }
  return base::ok();
}

// Out of fds or memory: the level-triggered listener would wake the loop at once, forever.
// Stop watching it for 100 ms instead; the pending connection waits in the kernel's queue.
void HostServices::Impl::pause_listener(int fd) {
  for (auto& [lfd, id] : listeners) {
    if (lfd.get() == fd) {
      base::log::warn("host services: cannot accept a connection now: {}", std::strerror(errno));
      event::WatchId wid = id;
      (void)loop->modify(wid, 0);
      (void)loop->add_timer(std::chrono::milliseconds(100), std::chrono::milliseconds(0),
                            [this, wid](uint64_t) {
                              if (loop != nullptr) {
                                (void)loop->modify(wid, EPOLLIN);
                              }
                            });
      return;
    }
  }
}

void HostServices::Impl::on_listener(int fd, Service service, const Mapping& m) {
  for (int i = 0; i < 64; ++i) {
    int s = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        pause_listener(fd);  // the connection stays queued; retrying now would spin
      }
      return;  // EAGAIN, or an aborted connection: nothing to do
    }
    auto c = std::make_unique<Conn>();
    c->id = next_id++;
    c->service = service;
    c->port = m.port;
    c->to_port = m.to_port;
    c->in = UniqueFd(s);
    c->family = local_port(s).first;
    Conn& conn = *c;
    uint64_t id = c->id;
    conns.emplace(id, std::move(c));
    audit->emit(audit::Event("host.open")
                    .num("id", static_cast<int64_t>(id))
                    .str("service", service_name(service))
                    .num("port", conn.port)
                    .num("to_port", conn.to_port)
                    .str("family", conn.family == AF_INET6 ? "ipv6" : "ipv4"));
    base::log::debug("{} #{}: {} -> {}", service_name(service), id, conn.port, conn.to_port);
    if (conns.size() > kMaxConns) {
      end(id, EMFILE, "too many connections");
      continue;
    }
    connect_next(conn);
  }
}

// Starts the connection to the destination: the host's loopback (a host port) directly; the
// box's (a published port) through a socket init makes in the box's network namespace.
void HostServices::Impl::connect_next(Conn& c) {
  int family = c.attempt == 0 ? AF_INET : AF_INET6;
  if (c.service == Service::kPublish && !c.out) {
    char req = family == AF_INET6 ? '6' : '4';
    if (::send(factory.get(), &req, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
      end(c.id, errno, "the box's socket factory");
      return;
    }
    awaiting_socket.push_back(c.id);
    return;
  }
  if (c.service == Service::kHostPort) {
    int s = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) {
      end(c.id, errno, "socket");
      return;
    }
    c.out = UniqueFd(s);
  }
  socklen_t len = 0;
  sockaddr_storage ss = loopback(family, c.to_port, &len);
  if (::connect(c.out.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    int err = errno;
    c.out.reset();
    if (++c.attempt < 2) {
      connect_next(c);
    } else {
      end(c.id, err, "connect");
    }
    return;
  }
  uint64_t id = c.id;
  auto w = loop->watch_fd(c.out.get(), EPOLLOUT, [this, id](uint32_t) { on_connected(id); });
  if (!w) {
    end(id, ENOMEM, "watch");
    return;
  }
  c.connect_watch = *w;
}

void HostServices::Impl::on_connected(uint64_t id) {
  auto it = conns.find(id);
  if (it == conns.end()) {
    return;
  }
  Conn& c = *it->second;
  loop->unwatch(c.connect_watch);
  c.connect_watch = 0;
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(c.out.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
    err = errno;
  }
  if (err != 0) {
    c.out.reset();
    if (++c.attempt < 2) {
      connect_next(c);
    } else {
      end(id, err, "connect");
    }
    return;
  }
  c.relay = std::make_unique<Relay>(*loop, std::move(c.in), std::move(c.out),
                                    [this, id](int e) { end(id, e, ""); });
  if (auto r = c.relay->start(); !r) {
    end(id, ENOMEM, "watch");
  }
}

void HostServices::Impl::on_factory() {
  for (int i = 0; i < 64; ++i) {
    struct {
      uint32_t type;
      uint16_t stage;
      int32_t err;
      int32_t index;
    } m{};
    iovec iov{&m, sizeof m};
    alignas(cmsghdr) char buf[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = buf;
    mh.msg_controllen = sizeof buf;
    ssize_t n = ::recvmsg(factory.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EAGAIN) {
      return;
    }
    if (n <= 0) {  // the box is gone: nothing more comes
      loop->unwatch(factory_watch);
      factory_watch = 0;
      while (!awaiting_socket.empty()) {
        uint64_t id = awaiting_socket.front();
        awaiting_socket.pop_front();
        end(id, ECONNREFUSED, "the box has ended");
      }
      return;
    }
    UniqueFd fd;
    if (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr && c->cmsg_type == SCM_RIGHTS) {
      int raw = -1;
      std::memcpy(&raw, CMSG_DATA(c), sizeof raw);
      fd = UniqueFd(raw);
    }
    if (awaiting_socket.empty()) {
      continue;
    }
    uint64_t id = awaiting_socket.front();
    awaiting_socket.pop_front();
    auto it = conns.find(id);
    if (it == conns.end()) {
      continue;
    }
    if (!fd) {
      end(id, m.err != 0 ? m.err : EIO, "socket in the box");
      continue;
    }
    it->second->out = std::move(fd);
    connect_next(*it->second);
  }
}

void HostServices::Impl::end(uint64_t id, int err, std::string_view why) {
  auto it = conns.find(id);
  if (it == conns.end()) {
    return;
  }
  std::unique_ptr<Conn> c = std::move(it->second);
  conns.erase(it);
  loop->unwatch(c->connect_watch);
  Counts& n = counts[{c->service, c->port}];
  ++n.conns;
  audit::Event ev("host.close");
  ev.num("id", static_cast<int64_t>(id))
      .str("service", service_name(c->service))
      .num("port", c->port)
      .num("to_port", c->to_port);
  if (c->relay) {
    ev.num("bytes_in",
           static_cast<int64_t>(c->service == Service::kHostPort ? c->relay->bytes_b_to_a()
                                                                 : c->relay->bytes_a_to_b()))
        .num("bytes_out",
             static_cast<int64_t>(c->service == Service::kHostPort ? c->relay->bytes_a_to_b()
                                                                   : c->relay->bytes_b_to_a()));
  }
  if (err != 0 && !c->relay) {
    ++n.failed;
    ev.str("error", fmt::format("{}: {}", why, std::strerror(err)));
    base::log::debug("{} #{}: {} -> {} failed: {}: {}", service_name(c->service), id, c->port,
                     c->to_port, why, std::strerror(err));
    if (c->in) {  // the client sees a reset, as from a closed port
      linger lg{1, 0};
      (void)::setsockopt(c->in.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
  }
  audit->emit(ev);
  // `c` (its relay too) goes here; a relay calling this from its own callback touches nothing of
  // itself after it (Relay::on_event).
}

std::vector<std::string> HostServices::finish() {
  Impl& im = *impl_;
  std::vector<std::string> lines;
  if (im.loop != nullptr) {
    while (!im.conns.empty()) {
      im.end(im.conns.begin()->first, 0, "session end");
    }
    for (auto& [fd, id] : im.listeners) {
      im.loop->unwatch(id);
    }
    im.loop->unwatch(im.factory_watch);
    im.listeners.clear();
    im.loop = nullptr;
  }
  for (const auto& [key, n] : im.counts) {
    std::string failed = n.failed > 0 ? fmt::format(" ({} failed)", n.failed) : "";
    std::string_view plural = n.conns == 1 ? "" : "s";
    uint16_t port = key.second;
    if (key.first == Service::kPublish) {
      lines.push_back(fmt::format("network: {} connection{} from the host to published port {}{}",
                                  n.conns, plural, port, failed));
      continue;
    }
    auto m = std::find_if(im.host_ports.begin(), im.host_ports.end(),
                          [port](const Mapping& h) { return h.port == port; });
    lines.push_back(fmt::format("network: {} connection{} to the host's loopback port {}{}",
                                n.conns, plural, m != im.host_ports.end() ? m->to_port : port,
                                failed));
  }
  im.counts.clear();
  return lines;
}

}  // namespace agentbox::app
