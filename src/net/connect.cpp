// Default FlowHandler: --connect-to overrides, supervisor-side resolution, rebinding guard.
#include "agentbox/net/connect.hpp"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "agentbox/base/log.hpp"
#include "agentbox/net/buffer_budget.hpp"

namespace agentbox::net {

using base::Error;
using base::Result;

Result<ConnectTo> parse_connect_to(std::string_view s) {
  auto r = policy::parse_connect_to(s);
  if (!r) {
    return Error::msg(fmt::format("bad --connect-to `{}`: {}", s, r.error().message()))
        .hint("write HOST:PORT:ADDR:PORT, e.g. api.example.com:443:127.0.0.1:8443");
  }
  return r;
}

Result<std::vector<ConnectTo>> parse_connect_to(const std::vector<std::string>& specs) {
  std::vector<ConnectTo> out;
  for (const auto& s : specs) {
    AGENTBOX_ASSIGN_OR_RETURN(auto ct, parse_connect_to(std::string_view(s)));
    out.push_back(std::move(ct));
  }
  return out;
}

Result<std::vector<policy::IpAddr>> system_resolve(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(name.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    return Error::msg(fmt::format("resolve `{}`: {}", name, gai_strerror(rc)));
  }
  std::vector<policy::IpAddr> out;
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    policy::IpAddr a;
    if (ai->ai_family == AF_INET) {
      sockaddr_in sin{};
      std::memcpy(&sin, ai->ai_addr, sizeof sin);
      a = policy::IpAddr::v4(ntohl(sin.sin_addr.s_addr));
    } else if (ai->ai_family == AF_INET6) {
      sockaddr_in6 sin6{};
      std::memcpy(&sin6, ai->ai_addr, sizeof sin6);
      std::array<uint8_t, 16> b{};
      std::memcpy(b.data(), &sin6.sin6_addr, 16);
      a = policy::IpAddr::v6(b);
    } else {
      continue;
    }
    out.push_back(a);
  }
  freeaddrinfo(res);
  return out;
}

Result<OpenResult> connect_nonblocking(const policy::IpAddr& addr, uint16_t port,
                                       uint64_t buffers) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (addr.is_v4()) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(addr.v4_value());
    std::memcpy(&ss, &sin, sizeof sin);
    len = sizeof sin;
  } else {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    std::memcpy(&sin6.sin6_addr, addr.bytes.data(), 16);
    std::memcpy(&ss, &sin6, sizeof sin6);
    len = sizeof sin6;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Error::sys(errno, "socket");
  }
  base::UniqueFd owned(fd);
  cap_socket_buffers(fd, buffers);  // before connect: the SYN's window scale follows SO_RCVBUF
  std::string where = fmt::format("{}:{}", addr.to_string(), port);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) == 0) {
    return OpenResult{.fd = std::move(owned), .connected = true};
  }
  if (errno != EINPROGRESS) {
    return Error::sys(errno, "connect", where);
  }
  return OpenResult{.fd = std::move(owned), .connected = false};
}

std::optional<Result<OpenResult>> ConnectHandler::open_direct(const FlowInfo& info) const {
  for (const auto& o : overrides_) {
    if (!info.literal && o.host == info.name && o.port == info.orig_port) {
      base::log::debug("tcp #{} {}:{} -> {}:{} (--connect-to)", info.id, info.name, info.orig_port,
                       o.addr.to_string(), o.to_port);
      return connect_nonblocking(o.addr, o.to_port, info.buffers.upstream);
    }
  }
  if (info.literal) {
    // The translator already applied decide_address (CIDR rules, special ranges).
    auto addr = policy::parse_ip(info.name);
    if (!addr) {
      return Result<OpenResult>(Error::msg(fmt::format("bad literal `{}`", info.name)));
    }
    return connect_nonblocking(*addr, info.orig_port, info.buffers.upstream);
  }
  return std::nullopt;
}

Result<OpenResult> ConnectHandler::on_open(const FlowInfo& info) {
  if (auto direct = open_direct(info)) {
    return std::move(*direct);
  }
  AGENTBOX_ASSIGN_OR_RETURN(auto addrs, resolver_(info.name));
  return connect_resolved(info, addrs);
}

Result<OpenResult> ConnectHandler::connect_resolved(
    const FlowInfo& info, const std::vector<policy::IpAddr>& addrs) const {
  std::string refused;
  std::optional<Error> failed;
  for (const auto& a : addrs) {
    auto d = policy_.check_resolved(a, info.orig_port);
    if (!d.allowed) {
      refused = d.reason;
      continue;
    }
    // An address that fails at once (ENETUNREACH for IPv6 on a host without it) is skipped
    // for the next one; a connect in progress is the answer.
    auto r = connect_nonblocking(a, info.orig_port, info.buffers.upstream);
    if (r) {
      base::log::debug("tcp #{} {}:{} -> {}", info.id, info.name, info.orig_port, a.to_string());
      return r;
    }
    failed = std::move(r).error();
  }
  if (failed) {
    return std::move(*failed);
  }
  if (!refused.empty()) {
    return Error::msg(
               fmt::format("`{}` resolved only to refused addresses: {}", info.name, refused))
        .hint("add a CIDR rule naming the range, or --connect-to for a local service");
  }
  return Error::msg(fmt::format("`{}` has no address", info.name));
}

}  // namespace agentbox::net
