// Parking the upstream of an idle intercepted flow: its connection and its OpenSSL `SSL` go,
// the box's connection stays, and the next request reconnects (docs/PROXY.md, "Memory").
//
// Why: an idle intercepted flow holds two `SSL` objects, ~14 KiB on the box side and ~20 KiB
// upstream (structs, AES-GCM contexts, key shares, the upstream's certificate), and OpenSSL
// frees none of that while a connection lives. The box's side must live (the agent holds its
// connection), the upstream's need not: HTTP/1.1 with no request in flight carries no state
// across requests, so a new connection to the same address, resuming the TLS session the old
// one left (UpstreamSessions), serves the next request the same. Parked only between requests
// (nothing in flight or held either way, the upstream's answer complete), so no byte is lost.
// The reconnect goes to the address the flow was connected to (checked when it opened), not
// to a new lookup: it is the same upstream, as a kept connection would be.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "agentbox/base/log.hpp"
#include "agentbox/net/connect.hpp"
#include "proxy_conn.hpp"

namespace agentbox::proxy {

namespace {

// What parking frees on the heap (the upstream `SSL` and its objects, bench_tls_memory): an
// estimate for the malloc_trim trigger, which only needs the order of magnitude.
constexpr size_t kParkedBytes = size_t{20} * 1024;

bool parkable(const ProxyOptions& o, const Conn& c, Clock::time_point now) {
  const auto& x = c.http;
  return c.mode == Mode::kHttp && c.intercept && !c.parked && c.up.tls && c.up.open() &&
         !c.up.connecting && !c.up.failed() && !c.up.eof && c.up.handshake_done() &&
         c.box.handshake_done() && !c.box.failed() && x.req == Exchange::Req::kHead &&
         x.resp == Exchange::Resp::kIdle && c.box.rx.empty() && c.up.rx.empty() &&
         c.up.pending() == 0 && !holds_bytes(c) && now - c.last_activity >= o.upstream_idle;
}

std::optional<Conn::Parked> peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return std::nullopt;
  }
  if (ss.ss_family == AF_INET) {
    sockaddr_in sin{};
    std::memcpy(&sin, &ss, sizeof sin);
    return Conn::Parked{.addr = policy::IpAddr::v4(ntohl(sin.sin_addr.s_addr)),
                        .port = ntohs(sin.sin_port)};
  }
  if (ss.ss_family == AF_INET6) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, &ss, sizeof sin6);
    std::array<uint8_t, 16> b{};
    std::memcpy(b.data(), &sin6.sin6_addr, b.size());
    return Conn::Parked{.addr = policy::IpAddr::v6(b), .port = ntohs(sin6.sin6_port)};
  }
  return std::nullopt;
}

}  // namespace

size_t park_upstream(ProxyHandler::Internals& in, Conn& c, Clock::time_point now) {
  if (!parkable(in.options, c, now)) {
    return 0;
  }
  auto peer = peer_of(c.up.fd.get());
  if (!peer) {
    return 0;
  }
  // close_notify, if the socket takes it now (it is empty: nothing was pending); an upstream
  // that sees a clean end keeps the session resumable on its side.
  c.up.tls->close();
  const auto& bye = c.up.tls->output();
  (void)::send(c.up.fd.get(), bye.data(), bye.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (c.up.tls->resumed()) {
    ++in.counters.upstream_resumed;  // destroy() counts only the connection open at the end
  }
  if (c.up.watch != 0) {
    in.loop.unwatch(c.up.watch);
  }
  c.up = Side{};  // closes the socket and frees the `SSL`
  c.parked = *peer;
  ++in.counters.upstream_parked;
  base::log::debug("proxy #{} {}: idle upstream connection closed until the next request",
                   c.info.id, c.sni);
  return kParkedBytes;
}

bool reopen_upstream(ProxyHandler::Internals& in, Conn& c) {
  const Conn::Parked p = *c.parked;
  c.parked.reset();
  if (!adopt_upstream(in, c, net::connect_nonblocking(p.addr, p.port, c.info.buffers.upstream))) {
    return false;
  }
  const auto resume = in.sessions.take(c.session_tag.key);
  auto tls = TlsChannel::connect(in.upstream_ctx.get(), c.sni, resume.get());
  if (!tls) {
    close_side(in, c.up);
    c.up.error = tls.error().message();
    return false;
  }
  c.up.tls = std::move(*tls);
  UpstreamSessions::tag(c.up.tls->native(), &c.session_tag);
  c.up.start_tls();
  ++in.counters.upstream_reopened;
  return true;
}

}  // namespace agentbox::proxy
