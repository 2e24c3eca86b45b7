// First bytes of a box flow -> passthrough, interception, plain HTTP or drop; and the splice.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

#include "agentbox/base/log.hpp"
#include "agentbox/policy/ip.hpp"
#include "h2_relay.hpp"
#include "proxy_conn.hpp"

namespace agentbox::proxy {

void audit_open(ProxyHandler::Internals& in, const net::FlowInfo& info, std::string_view mode,
                std::string_view sni) {
  audit::Event e("proxy.open");
  e.num("id", static_cast<int64_t>(info.id))
      .str("host", info.name)
      .num("port", info.orig_port)
      .str("mode", mode);
  if (!sni.empty()) {
    e.str("sni", sni);
  }
  in.audit.emit(e);
}

namespace {

bool needs_interception(const ProxyHandler::Internals& in, std::string_view host) {
  if (in.options.inspect_every && in.ca != nullptr && in.ca->permits(host)) {
    return true;
  }
  return std::any_of(in.intercept.begin(), in.intercept.end(),
                     [&](const policy::HostPattern& p) { return p.matches(host); });
}

bool start_passthrough(ProxyHandler::Internals& in, Conn& c) {
  if (!c.refused.empty()) {
    drop(in, c, "passthrough refused: " + c.refused);
    return true;
  }
  if (in.options.budget != nullptr) {
    // Passthrough TLS has no request the proxy can answer: a spent egress budget ends the flow.
    if (auto b = in.options.budget->admit_flow(c.info.name); b.limit != SessionLimit::kNone) {
      drop(in, c, "passthrough refused: " + b.why);
      return true;
    }
  }
  c.mode = Mode::kSplice;
  ++in.counters.passthrough;
  audit_open(in, c.info, "passthrough", c.sni);
  if (!open_upstream(in, c)) {
    drop(in, c, "cannot reach upstream: " + c.up.error);
    return true;
  }
  // The ClientHello (and anything after it) is replayed as read: handed back to the translator
  // with it, or moved by splice() when the upstream cannot take it yet.
  (void)try_hand_back(in, c, false);
  return true;
}

bool start_interception(ProxyHandler::Internals& in, Conn& c,
                        const std::vector<std::string>& alpn) {
  if (in.ca == nullptr || !in.ca->permits(c.sni)) {
    drop(in, c,
         "`" + c.sni +
             "` must be intercepted (a credential or HTTP rule names it) but the "
             "session CA cannot sign for it");
    return true;
  }
  if (auto made = make_tls_contexts(in); !made) {
    drop(in, c, "TLS setup failed: " + made.error().message());
    return true;
  }
  auto leaf = in.ca->leaf_for(c.sni);
  if (!leaf) {
    drop(in, c, "minting a certificate for `" + c.sni + "`: " + leaf.error().message());
    return true;
  }
  auto box_tls = TlsChannel::accept(in.box_ctx.get(), **leaf);
  c.session_tag = {.cache = &in.sessions, .key = c.sni + ":" + std::to_string(c.info.orig_port)};
  const auto resume = in.sessions.take(c.session_tag.key);
  auto up_tls = TlsChannel::connect(in.upstream_ctx.get(), c.sni, resume.get());
  if (!box_tls || !up_tls) {
    drop(in, c, "TLS setup failed");
    return true;
  }
  c.intercept = true;
  c.mode = Mode::kHttp;
  ++in.counters.intercepted;
  audit_open(in, c.info, "intercept", c.sni);
  const std::string up_alpn = h2_upstream_alpn(in, c, alpn);
  if (!up_alpn.empty() && c.up.open()) {
    // The box offered h2: it is answered once the upstream picked (alpn_step).
    up_tls->offer_alpn(up_alpn);
    h2_defer_box(in, c, std::move(*box_tls));
  } else {
    // The box side continues from the bytes already read: nothing is lost or replayed.
    c.box.adopt_tls(std::move(*box_tls));
  }
  if (!open_upstream(in, c)) {
    return true;  // http_step answers the first request with a 502 naming the cause
  }
  c.up.tls = std::move(*up_tls);
  UpstreamSessions::tag(c.up.tls->native(), &c.session_tag);
  c.up.start_tls();
  return true;
}

// Whether the flow holds an interception slot, taking a free one. Otherwise it queues (once),
// its ClientHello kept in rx: the box side is not read until a slot is granted (grant_slots),
// so the box's further bytes wait in its own socket, and the flow costs its TCP state and
// that ClientHello, not two OpenSSL connections.
bool take_slot(ProxyHandler::Internals& in, Conn& c) {
  if (c.slot) {
    return true;
  }
  if (in.slots_taken < in.options.max_intercepted && in.slot_waiters.empty()) {
    c.slot = true;
    ++in.slots_taken;
    return true;
  }
  if (!c.slot_wait) {
    c.slot_wait = true;
    in.slot_waiters.push_back(c.id);
    ++in.counters.slot_waits;
    in.audit.emit(
        audit::Event("proxy.wait")
            .num("id", static_cast<int64_t>(c.info.id))
            .str("host", c.info.name)
            .num("port", c.info.orig_port)
            .str("reason", fmt::format("{} intercepted flows open (network.max_intercepted):"
                                       " waits for one to end",
                                       in.slots_taken)));
  }
  return false;
}

}  // namespace

namespace {

int session_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

void UpstreamSessions::attach(SSL_CTX* ctx) {
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, &UpstreamSessions::on_new_session);
}

void UpstreamSessions::tag(SSL* ssl, Tag* tag) {
  (void)SSL_set_ex_data(ssl, session_index(), tag);
}

ossl::SessionPtr UpstreamSessions::take(const std::string& key) {
  auto it = sessions_.find(key);
  if (it == sessions_.end()) {
    return nullptr;
  }
  ossl::SessionPtr s = std::move(it->second);
  sessions_.erase(it);
  return s;
}

int UpstreamSessions::on_new_session(SSL* ssl, SSL_SESSION* session) {
  constexpr size_t kMaxSessions = 256;
  auto* tag = static_cast<Tag*>(SSL_get_ex_data(ssl, session_index()));
  if (tag == nullptr || tag->cache == nullptr || SSL_SESSION_is_resumable(session) != 1) {
    return 0;
  }
  auto& m = tag->cache->sessions_;
  if (m.size() >= kMaxSessions && m.find(tag->key) == m.end()) {
    m.erase(m.begin());
  }
  // A copy: OpenSSL marks the connection's own session object not resumable when that
  // connection ends without close_notify (ours often do, torn down with the box's flow), which
  // says nothing about the ticket the verified server issued.
  ossl::SessionPtr copy(SSL_SESSION_dup(session));
  if (copy) {
    m[tag->key] = std::move(copy);
  }
  return 0;  // the connection keeps its own reference
}

bool open_upstream(ProxyHandler::Internals&, Conn& c) {
  if (!c.up.fd && c.up.error.empty()) {
    c.up.error = "no upstream connection";
  }
  return c.up.fd.valid();  // opened as the flow was, or when its name resolved
}

bool adopt_upstream(ProxyHandler::Internals& in, Conn& c, base::Result<net::OpenResult> r) {
  if (!r) {
    ++in.counters.upstream_failures;
    c.up.error = r.error().message();
    in.audit.emit(audit::Event("proxy.upstream")
                      .num("id", static_cast<int64_t>(c.info.id))
                      .str("host", c.info.name)
                      .num("port", c.info.orig_port)
                      .str("error", c.up.error));
    return false;
  }
  c.up.fd = std::move(r->fd);
  c.up.connecting = !r->connected;
  // Every flush is one send() of what is ready; Nagle would hold a request behind the ACK of
  // the TLS Finished (a 40 ms delayed-ACK stall per new connection).
  int one = 1;
  (void)::setsockopt(c.up.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return true;
}

bool try_hand_back(ProxyHandler::Internals& in, Conn& c, bool connecting_ok) {
  constexpr size_t kDrainBudget = size_t{64} * 1024;
  if (!c.handback) {
    return false;
  }
  // Host -> box: only while nothing of the upstream's went through us (the translator would
  // otherwise hold peeked bytes of the socketpair, or we bytes it never saw). Either FIN or a
  // failure: the splice finishes the flow as it always did.
  if (in.control == nullptr || c.mode != Mode::kSplice || c.up.bytes_in > 0 || !c.up.rx.empty() ||
      c.up.fd_eof || c.box.bytes_out > 0 || c.box.pending() > 0 || c.box.eof || c.box.want_shut ||
      c.up.want_shut || c.box.failed() || c.up.failed() || !c.box.open() || !c.up.open()) {
    c.handback = false;
    return false;
  }
  if (c.resolving != 0 || c.plug || (c.up.connecting && !connecting_ok)) {
    return false;  // later
  }
  // Box -> host: everything the translator wrote into the socketpair goes upstream first. The
  // loop is single-threaded, so nothing new arrives between this drain and the swap.
  for (int i = 0; i < 16; ++i) {
    const size_t before = c.box.rx.size();
    if (!c.box.fill(kDrainBudget) || c.box.fd_eof || c.box.failed() ||
        c.box.rx.size() - before < kDrainBudget) {
      break;
    }
  }
  if (c.box.eof || c.box.failed()) {
    c.handback = false;
    return false;
  }
  if (!c.box.rx.empty()) {
    c.up.send(c.box.rx.view());
    c.box.rx.clear();
  }
  (void)c.up.flush();
  if (c.up.failed()) {
    c.handback = false;
    return false;
  }
  if (c.up.unsent() > 0) {
    return false;  // the upstream takes the rest first; tried again on the next splice step
  }
  // Unwatched before the translator watches the same socket; update_interest watches again if
  // the translator refuses.
  for (Side* s : {&c.box, &c.up}) {
    if (s->watch != 0) {
      in.loop.unwatch(s->watch);
      s->watch = 0;
      s->interest = 0;
    }
  }
  if (auto st = in.control->hand_back(c.info.id, c.up.fd); !st) {
    base::log::debug("proxy #{}: not handed back: {}", c.info.id, st.error().message());
    c.handback = false;
    return false;
  }
  ++in.counters.handed_back;
  base::log::debug("proxy #{} {}:{}: handed back to the network stack", c.info.id, c.info.name,
                   c.info.orig_port);
  c.box.close_fd();
  c.handback = false;
  c.done = true;
  return true;
}

bool classify(ProxyHandler::Internals& in, Conn& c) {
  if (c.box.failed()) {
    c.done = true;
    return true;
  }
  const auto bytes = c.box.rx.bytes();
  const std::string where = c.info.name + ":" + std::to_string(c.info.orig_port);
  switch (http::classify_stream(bytes)) {
    case http::StreamKind::kNeedMore:
      if (c.box.eof) {
        drop(in, c, c.box.rx.empty() ? "closed before sending anything" : "closed mid-preamble");
        return true;
      }
      return false;
    case http::StreamKind::kOther:
      drop(in, c, "neither TLS nor HTTP to " + where + " (no raw_tcp rule allows it)");
      return true;
    case http::StreamKind::kHttp1:
      c.mode = Mode::kHttp;
      ++in.counters.plain_http;
      audit_open(in, c.info, "http", c.sni);
      (void)open_upstream(in, c);  // a failure is answered as a 502 to the first request
      return true;
    case http::StreamKind::kTls:
      break;
  }
  const auto r = http::parse_client_hello(bytes);
  switch (r.status) {
    case http::HelloStatus::kNeedMore:
      if (c.box.eof) {
        drop(in, c, "closed in the middle of a TLS ClientHello");
        return true;
      }
      return false;
    case http::HelloStatus::kNotTls:
    case http::HelloStatus::kMalformed:
      drop(in, c, "malformed TLS ClientHello to " + where + ": " + r.reason);
      return true;
    case http::HelloStatus::kOk:
      break;
  }
  c.tls = true;
  if (c.info.literal) {
    // A CIDR rule allowed this address: no name to check, and an SNI would name something else.
    if (r.hello.has_sni || r.hello.has_ech || r.hello.has_esni) {
      drop(in, c, "TLS to the address " + c.info.name + " names a host (SNI); connect by name");
      return true;
    }
    return start_passthrough(in, c);
  }
  if (auto st = names_agree(c.info.name, r.hello); !st) {
    drop(in, c, st.error().message());
    return true;
  }
  c.sni = r.hello.sni;
  if (!needs_interception(in, c.sni)) {
    return start_passthrough(in, c);
  }
  return take_slot(in, c) ? start_interception(in, c, r.hello.alpn) : false;
}

bool splice(ProxyHandler::Internals& in, Conn& c) {
  const size_t cap = c.cap;
  if (c.box.failed()) {
    c.done = true;
    return true;
  }
  if (c.up.failed()) {
    base::log::debug("proxy #{}: upstream: {}", c.info.id, c.up.error);
    if (c.mode == Mode::kSplice) {
      in.audit.emit(audit::Event("proxy.upstream")
                        .num("id", static_cast<int64_t>(c.info.id))
                        .str("host", c.info.name)
                        .num("port", c.info.orig_port)
                        .str("error", c.up.error));
    }
    drop(in, c, {});
    return true;
  }
  if (c.handback && try_hand_back(in, c, false)) {
    return true;
  }
  bool progress = false;
  if (!c.box.rx.empty() && c.up.pending() < cap) {
    const size_t n = std::min(c.box.rx.size(), cap - c.up.pending());
    if (c.ws && !ws_up(in, c, c.box.rx.view().substr(0, n))) {
      return true;  // ended: a placeholder off-scope, or not WebSocket
    }
    c.up.send(c.box.rx.view().substr(0, n));
    c.box.rx.consume(n);
    progress = true;
  }
  if (!c.up.rx.empty() && c.box.pending() < cap) {
    const size_t n = std::min(c.up.rx.size(), cap - c.box.pending());
    const auto piece = c.up.rx.view().substr(0, n);
    if (c.ws) {
      if (!ws_down(in, c, piece)) {
        return true;
      }
    } else {
      c.box.send(piece);
    }
    c.up.rx.consume(n);
    progress = true;
  }
  if (c.box.eof && c.box.rx.empty() && !c.up.want_shut) {
    c.up.want_shut = true;
    progress = true;
  }
  if (c.up.eof && c.up.rx.empty() && !c.box.want_shut) {
    c.box.want_shut = true;
    progress = true;
  }
  if (c.box.eof && c.up.eof && c.box.shut && c.up.shut && c.box.pending() == 0) {
    c.done = true;
    progress = true;
  }
  return progress;
}

}  // namespace agentbox::proxy
