// ProxyHandler: flow lifecycle, event-loop plumbing, deadlines (theory in proxy_handler.hpp).
#include "agentbox/proxy/proxy_handler.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <exception>

#include "agentbox/base/log.hpp"
#include "agentbox/net/buffer_budget.hpp"
#include "h2_relay.hpp"
#include "proxy_conn.hpp"

namespace agentbox::proxy {

namespace {

constexpr size_t kReadBudget = size_t{64} * 1024;  // per side per round
constexpr size_t kTrimAfter = size_t{4} << 20;     // heap freed before malloc_trim (bytes)
constexpr int kMaxRounds = 64;                     // per callback, for fairness
constexpr std::chrono::seconds kClosingGrace{10};
constexpr size_t kMinCap = 2048;  // per direction, the smallest a flow's budget makes it

// Every open flow pays for its Conn, 4096 of them at most: state that only some flows need
// (a WebSocket relay, a usage meter) goes behind a pointer. An idle intercepted flow's budget
// is 32 KiB, most of it OpenSSL's (docs/PROXY.md, "Memory of an idle or stalled
// intercepted flow"); it was 3.7 KiB with those inline.
static_assert(sizeof(Conn) <= 2560, "Conn grew: keep rarely used per-flow state behind a pointer");

bool can_read(const ProxyOptions& o, const Conn& c, const Side& s) {
  if (c.resolving != 0) {
    return false;  // nothing is read before the upstream is known
  }
  if (!s.open() || s.connecting || s.fd_eof || s.failed() || s.rx.size() >= rx_limit(o, c, s)) {
    return false;
  }
  if (c.mode == Mode::kClosing) {
    return &s == &c.box;  // lingering close: see closing_step
  }
  if (c.mode == Mode::kClassify) {
    return &s == &c.box && !c.slot_wait;
  }
  const Side& other = &s == &c.box ? c.up : c.box;
  return other.pending() < c.cap;
}

// What one fill() may read: up to the side's limit (a TLS side's records may decrypt a little
// past it), at most kReadBudget.
size_t read_budget(const ProxyOptions& o, const Conn& c, const Side& s) {
  const size_t limit = rx_limit(o, c, s);
  return std::clamp<size_t>(limit > s.rx.size() ? limit - s.rx.size() : 0, 1, kReadBudget);
}

// Lingering close (as HTTP servers do): after our last bytes and FIN, what the box still sends
// (the body of a denied upload) is read and discarded until its EOF, so that closing with
// unread data does not reset the connection and destroy the answer in flight to the agent.
bool closing_step(Conn& c) {
  constexpr uint64_t kMaxLinger = uint64_t{1} << 20;
  if (c.box.failed() || !c.box.open()) {
    c.done = true;
    return true;
  }
  bool progress = false;
  if (!c.box.rx.empty()) {
    c.lingered += c.box.rx.size();
    c.box.rx.clear();
    progress = true;
  }
  if (!c.box.want_shut) {
    c.box.want_shut = true;
    return true;
  }
  if (c.box.shut && (c.box.eof || c.lingered > kMaxLinger)) {
    c.done = true;
    return true;
  }
  return progress;
}

// While the upstream name resolves, the translator's end of the socketpair is made unwritable:
// its send buffer shrunk to the minimum and filled from our side. The translator treats a
// returned socket that is not yet writable as a connect in progress (connected = false), so the
// box gets its SYN-ACK when we drain the filler (resolved and connecting upstream) and a RST
// when we close our end with the filler unread (AF_UNIX then reports ECONNRESET to the peer):
// the same answers as for a name resolved on the spot, with no lookup on the loop. Returns
// nullopt (nothing changed that matters) when the socket cannot be plugged.
std::optional<Conn::Plug> plug(int theirs, int ours) {
  Conn::Plug p;
  socklen_t len = sizeof p.sndbuf;
  if (::getsockopt(theirs, SOL_SOCKET, SO_SNDBUF, &p.sndbuf, &len) != 0) {
    return std::nullopt;
  }
  const int fd = ::fcntl(theirs, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    return std::nullopt;
  }
  p.peer = base::UniqueFd(fd);
  int small = 1;  // the kernel's minimum (a few KiB)
  (void)::setsockopt(theirs, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  static const char kFiller[4096] = {};
  for (int i = 0; i < 64; ++i) {
    const ssize_t n = ::send(theirs, kFiller, sizeof kFiller, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) {
      break;
    }
    p.junk += static_cast<size_t>(n);
  }
  pollfd pfd{.fd = theirs, .events = POLLOUT, .revents = 0};
  if (::poll(&pfd, 1, 0) != 0) {
    // Still writable (or an error): this kernel does not hold it; undo.
    Conn::Plug undo = std::move(p);
    char buf[4096];
    while (undo.junk > 0) {
      const ssize_t n = ::recv(ours, buf, std::min(sizeof buf, undo.junk), MSG_DONTWAIT);
      if (n <= 0) {
        break;
      }
      undo.junk -= static_cast<size_t>(n);
    }
    int half = undo.sndbuf / 2;
    (void)::setsockopt(theirs, SOL_SOCKET, SO_SNDBUF, &half, sizeof half);
    return std::nullopt;
  }
  return p;
}

// The name resolved and the upstream is connecting: the translator's end becomes writable (the
// box gets its SYN-ACK) and our end holds only what the box sends from now on.
bool unplug(Conn::Plug& p, int ours) {
  int half = p.sndbuf / 2;  // getsockopt reports the doubled value setsockopt makes
  (void)::setsockopt(p.peer.get(), SOL_SOCKET, SO_SNDBUF, &half, sizeof half);
  char buf[4096];
  for (int i = 0; i < 1024 && p.junk > 0; ++i) {
    const ssize_t n = ::recv(ours, buf, std::min(sizeof buf, p.junk), MSG_DONTWAIT);
    if (n <= 0) {
      return false;
    }
    p.junk -= static_cast<size_t>(n);
  }
  p.peer.reset();
  return p.junk == 0;
}

}  // namespace

std::vector<std::string> ProxyHandler::intercept_hosts(const std::vector<http::HttpRuleSpec>& rules,
                                                       const cred::CredentialSet* credentials,
                                                       const std::vector<std::string>& inspect) {
  std::vector<std::string> out;
  for (const auto& r : rules) {
    if (auto p = policy::HostPattern::parse(r.host)) {
      out.push_back(p->to_string());
    }
  }
  for (const auto& h : inspect) {
    if (auto p = policy::HostPattern::parse(h)) {
      out.push_back(p->to_string());
    }
  }
  if (credentials != nullptr) {
    auto hosts = credentials->host_patterns();
    out.insert(out.end(), hosts.begin(), hosts.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// TLS contexts only where something is intercepted, and there on the session's first
// interception: SSL_CTX_new and libssl's first use (~1 ms of CPU each session, and their frees at
// its end) are not spent by a session whose program never reaches an intercepted host.
base::Status make_tls_contexts(ProxyHandler::Internals& in) {
  if (in.box_ctx && in.upstream_ctx) {
    return base::ok();
  }
  AGENTBOX_ASSIGN_OR_RETURN(auto box_ctx, make_box_ctx());
  AGENTBOX_ASSIGN_OR_RETURN(auto upstream_ctx,
                            make_upstream_ctx(in.options.system_bundle, in.options.upstream_ca));
  UpstreamSessions::attach(upstream_ctx.get());
  in.box_ctx = std::move(box_ctx);
  in.upstream_ctx = std::move(upstream_ctx);
  return base::ok();
}

bool ProxyHandler::tls_contexts_made() const {
  return in_->box_ctx != nullptr;
}

base::Result<std::unique_ptr<ProxyHandler>> ProxyHandler::create(
    event::Loop& loop, const policy::EgressPolicy& policy, ProxyOptions options,
    cred::CredentialSet* credentials, SessionCa* ca, audit::Sink& audit) {
  std::unique_ptr<ProxyHandler> h(new ProxyHandler());
  AGENTBOX_ASSIGN_OR_RETURN(auto rules, http::HttpRules::create(options.http_rules));
  AGENTBOX_ASSIGN_OR_RETURN(auto raw, policy::EgressPolicy::parse(options.raw_tcp));
  if (ca != nullptr) {
    AGENTBOX_TRY(check_system_bundle(options.system_bundle));
  }
  std::vector<policy::HostPattern> intercept;
  for (const auto& p : intercept_hosts(options.http_rules, credentials, options.inspect)) {
    if (auto hp = policy::HostPattern::parse(p)) {
      intercept.push_back(std::move(*hp));
    }
  }
  auto connect_to = options.connect_to;
  auto resolver = options.resolver;
  h->in_ = std::unique_ptr<Internals>(new Internals{
      .loop = loop,
      .policy = policy,
      .options = std::move(options),
      .rules = std::move(rules),
      .raw_tcp = std::move(raw),
      .connector = net::ConnectHandler(policy, std::move(connect_to), std::move(resolver)),
      .credentials = credentials,
      .ca = ca,
      .audit = audit,
      .intercept = std::move(intercept),
      .counters = h->counters_,
  });
  // Extra upstream CA files are loaded now, so that one which does not parse stops the start.
  if (ca != nullptr && !h->in_->options.upstream_ca.empty()) {
    AGENTBOX_TRY(make_tls_contexts(*h->in_));
  }
  ProxyHandler* self = h.get();
  h->in_->wake = [self](uint64_t id) { self->on_wake(id); };
  const auto& o = h->in_->options;
  AGENTBOX_ASSIGN_OR_RETURN(h->in_->resolver,
                            net::AsyncResolver::create(loop, {.resolve = o.resolver,
                                                              .threads = o.resolver_threads,
                                                              .max_queue = 256,
                                                              .timeout = o.resolve_timeout,
                                                              .ttl = o.dns_ttl,
                                                              .negative_ttl = o.dns_negative_ttl,
                                                              .max_cache = 1024}));
  if (credentials != nullptr) {
    // file:/cmd: re-reads (a command may take up to its 10 s timeout) run on one worker thread.
    AGENTBOX_ASSIGN_OR_RETURN(h->in_->refresher,
                              net::Worker::create(loop, {.threads = 1, .max_queue = 64}));
    auto source = std::make_shared<cred::SecretSource>(credentials->source());
    net::Worker* worker = h->in_->refresher.get();
    credentials->set_refresher(
        [worker, source](const policy::SourceSpec& from,
                         const std::function<void(base::Result<std::string>)>& done) -> bool {
          auto result = std::make_shared<base::Result<std::string>>(base::Error::msg("not read"));
          return worker->post([result, source, from] { *result = source->read(from); },
                              [result, done] { done(std::move(*result)); });
        });
  }
  AGENTBOX_ASSIGN_OR_RETURN(
      h->sweep_, loop.add_timer(h->in_->options.sweep_interval, h->in_->options.sweep_interval,
                                [self](uint64_t) { self->on_sweep(); }));
  return h;
}

ProxyHandler::~ProxyHandler() {
  if (!in_) {
    return;
  }
  if (in_->credentials != nullptr) {
    in_->credentials->set_refresher(nullptr);  // it points at this handler's worker
  }
  for (auto& [id, c] : conns_) {
    for (Side* s : {&c->box, &c->up}) {
      if (s->watch != 0) {
        in_->loop.unwatch(s->watch);
      }
    }
  }
  in_->loop.unwatch(sweep_);
  if (flush_timer_ != 0) {
    in_->loop.unwatch(flush_timer_);
  }
}

void ProxyHandler::attach(net::FlowControl* control) {
  in_->control = control;
}

std::optional<base::Result<net::OpenResult>> ProxyHandler::open_raw(const net::FlowInfo& info) {
  // Without a translator (tests serving the handler directly) the flow is relayed as before.
  if (in_->control == nullptr || !in_->raw_tcp.decide(info.name, info.orig_port).allowed) {
    return std::nullopt;
  }
  if (in_->options.budget != nullptr) {
    // Raw TCP has no request to answer: a spent egress budget refuses the flow (a reset).
    if (auto b = in_->options.budget->admit_flow(info.name); b.limit != SessionLimit::kNone) {
      return base::Result<net::OpenResult>(base::Error::msg(b.why));
    }
  }
  auto direct = in_->connector.open_direct(info);
  std::optional<net::AsyncResolver::Addrs> known;
  if (!direct) {
    known = in_->resolver->cached(info.name);
    if (!known) {
      return std::nullopt;  // resolved on the worker: a Conn waits, then hands back
    }
  }
  auto r = direct     ? std::move(*direct)
           : (*known) ? in_->connector.connect_resolved(info, **known)
                      : base::Result<net::OpenResult>(known->error());
  if (!r) {
    ++counters_.upstream_failures;
    in_->audit.emit(audit::Event("proxy.upstream")
                        .num("id", static_cast<int64_t>(info.id))
                        .str("host", info.name)
                        .num("port", info.orig_port)
                        .str("error", r.error().message()));
    return base::Result<net::OpenResult>(
        base::Error::msg("cannot reach `" + info.name + "`: " + r.error().message()));
  }
  ++counters_.opened;
  ++counters_.raw;
  ++counters_.handed_back;
  audit_open(*in_, info, "raw");
  return r;
}

namespace {

// The session's connection budget, asked once per new box flow before anything is opened for
// it: the refusal's one line, or empty.
std::string admit_connection(ProxyHandler::Internals& in, const net::FlowInfo& info) {
  if (in.options.budget == nullptr) {
    return {};
  }
  auto r = in.options.budget->admit_connection(info.name, Clock::now());
  return r.limit == SessionLimit::kNone ? std::string() : std::move(r.why);
}

}  // namespace

base::Result<net::OpenResult> ProxyHandler::on_open(const net::FlowInfo& info) {
  const std::string refused = admit_connection(*in_, info);
  // Raw TCP is spliced unchanged from the first byte: the upstream socket is the flow's at once
  // (the translator carries it as a direct connection), no socketpair and no Conn.
  if (auto raw = refused.empty() ? open_raw(info) : std::nullopt) {
    return std::move(*raw);
  }
  int sv[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return base::Error::sys(errno, "socketpair", "proxy flow");
  }
  base::UniqueFd theirs(sv[0]);
  base::UniqueFd ours(sv[1]);
  // Both directions wait in these send buffers (the translator's window, our output): sized
  // from the flow's share of the session's buffer budget.
  net::cap_send_buffer(theirs.get(), info.buffers.pair);
  net::cap_send_buffer(ours.get(), info.buffers.pair);
  bool plugged = false;
  AGENTBOX_TRY(serve_flow(info, std::move(ours), theirs.get(), plugged, refused));
  // Plugged: the translator waits for the socket to become writable (the name resolved).
  return net::OpenResult{.fd = std::move(theirs), .connected = !plugged};
}

base::Status ProxyHandler::serve(const net::FlowInfo& info, base::UniqueFd box) {
  bool plugged = false;
  return serve_flow(info, std::move(box), -1, plugged, admit_connection(*in_, info));
}

base::Status ProxyHandler::serve_flow(const net::FlowInfo& info, base::UniqueFd box,
                                      int translator_end, bool& plugged,
                                      const std::string& refused) {
  if (conns_.size() >= in_->options.max_connections) {
    return base::Error::msg("too many proxied connections");
  }
  if (!refused.empty() && in_->raw_tcp.decide(info.name, info.orig_port).allowed) {
    return base::Error::msg(refused);  // raw TCP has no request to answer: a reset
  }
  const int flags = ::fcntl(box.get(), F_GETFL);
  if (flags < 0 || ::fcntl(box.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return base::Error::sys(errno, "fcntl O_NONBLOCK", "proxy flow");
  }
  auto c = std::make_unique<Conn>();
  c->id = next_id_++;
  c->info = info;
  // A full-sized grant keeps the full buffer; a smaller one (many flows open) half of what one
  // socketpair end holds, so that a stalled flow costs little memory on either side of us.
  c->cap = info.buffers.pair == 0 || info.buffers.pair >= net::BufferBudget::kMaxPair
               ? in_->options.buffer
               : std::clamp<size_t>(info.buffers.pair / 2, kMinCap, in_->options.buffer);
  c->box.fd = std::move(box);
  c->opened = c->last_activity = Clock::now();
  c->handback = translator_end >= 0;
  ++counters_.opened;
  if (in_->raw_tcp.decide(info.name, info.orig_port).allowed) {
    // Raw TCP: the server may speak first (SSH), so splice from the start.
    c->mode = Mode::kSplice;
    c->raw = true;
    ++counters_.raw;
    audit_open(*in_, info, "raw");
  }
  c->refused = refused;
  c->up.error = refused;
  // The upstream is connected now, whatever the first bytes turn out to be: where bytes may go
  // does not depend on them (SNI and Host must equal the flow's name), a name that resolves
  // only to refused addresses (rebinding) or to nothing is answered with a RST as on the plain
  // path, and the connect overlaps the box's handshake instead of following it. A name that
  // must be looked up is resolved on the worker; the flow waits (plugged) meanwhile.
  auto direct = refused.empty() ? in_->connector.open_direct(info) : std::nullopt;
  std::optional<net::AsyncResolver::Addrs> known;
  if (!direct && refused.empty()) {
    known = in_->resolver->cached(info.name);
  }
  if (!refused.empty()) {
    // Refused by the connection budget: nothing upstream; the first request learns why.
  } else if (direct || known) {
    auto r = direct     ? std::move(*direct)
             : (*known) ? in_->connector.connect_resolved(info, **known)
                        : base::Result<net::OpenResult>(known->error());
    if (!adopt_upstream(*in_, *c, std::move(r))) {
      return base::Error::msg("cannot reach `" + info.name + "`: " + c->up.error);
    }
  } else {
    if (translator_end >= 0) {
      c->plug = plug(translator_end, c->box.fd.get());
    }
    if (translator_end >= 0 && !c->plug) {
      // Not pluggable on this kernel: resolve here rather than answer SYN-ACK for a name that
      // may lead nowhere (blocks the loop for this lookup only).
      auto addrs = in_->options.resolver(info.name);
      auto r = addrs ? in_->connector.connect_resolved(info, *addrs)
                     : base::Result<net::OpenResult>(addrs.error());
      if (!adopt_upstream(*in_, *c, std::move(r))) {
        return base::Error::msg("cannot reach `" + info.name + "`: " + c->up.error);
      }
    } else {
      plugged = c->plug.has_value();
      const uint64_t id = c->id;
      c->resolving = in_->resolver->resolve(
          info.name, [this, id](const net::AsyncResolver::Addrs& a) { on_resolved(id, a); });
    }
  }
  Conn& ref = *c;
  by_flow_[info.id] = c->id;
  conns_.emplace(c->id, std::move(c));
  update_interest(ref);
  if (ref.done) {
    destroy(ref.id);
    return base::Error::msg("cannot watch the proxied connection");
  }
  return base::ok();
}

void ProxyHandler::on_resolved(uint64_t id, const net::AsyncResolver::Addrs& addrs) noexcept {
  try {
    handle_resolved(id, addrs);
  } catch (...) {
    ++counters_.internal_errors;
    auto it = conns_.find(id);
    if (it != conns_.end()) {
      it->second->done = true;
    }
  }
}

void ProxyHandler::handle_resolved(uint64_t id, const net::AsyncResolver::Addrs& addrs) {
  auto it = conns_.find(id);
  if (it == conns_.end()) {
    return;
  }
  Conn& c = *it->second;
  c.resolving = 0;
  auto r = addrs ? in_->connector.connect_resolved(c.info, *addrs)
                 : base::Result<net::OpenResult>(addrs.error());
  const bool ok = adopt_upstream(*in_, c, std::move(r));
  if (c.plug) {
    if (!ok || !unplug(*c.plug, c.box.fd.get())) {
      // Our end closes with the filler unread: the translator sees ECONNRESET and resets the
      // box's connection attempt (as a refusal at SYN time would).
      destroy(id);
      return;
    }
    c.plug.reset();
    // The box has not been answered yet: a raw flow continues on the upstream socket, connected
    // or not, and the translator answers the box when that connect completes.
    if (c.raw && try_hand_back(*in_, c, true)) {
      destroy(id);
      return;
    }
  } else if (!ok) {
    drop(*in_, c, "cannot reach `" + c.info.name + "`: " + c.up.error);
  }
  run(c);
  if (!c.done) {
    update_interest(c);
  }
  if (c.done) {
    destroy(id);
  }
}

void ProxyHandler::on_wake(uint64_t id) noexcept {
  try {
    auto it = conns_.find(id);
    if (it == conns_.end()) {
      return;
    }
    Conn& c = *it->second;
    c.http.woken = true;
    run(c);
    if (!c.done) {
      update_interest(c);
    }
    if (c.done) {
      destroy(id);
    }
  } catch (...) {
    ++counters_.internal_errors;
  }
}

// A box-side handshake still running when the flow closes: the client may have ended it with an
// alert (unknown_ca: it does not trust the session CA) that is still unread in our end of the
// socketpair, for a client that closes with our handshake bytes unread resets the connection
// right after its alert. Read it (bounded), so the refusal is counted and its host named.
void ProxyHandler::read_refusal(Conn& c) {
  if ((c.mode != Mode::kHttp && c.mode != Mode::kH2) || !c.box.tls || c.box.handshake_done() ||
      !c.box.open() || c.box.failed()) {
    return;
  }
  try {
    for (int i = 0; i < 16 && c.box.fill(kReadBudget) && !c.box.fd_eof && !c.box.failed(); ++i) {
    }
    if (c.box.failed()) {
      (void)http_step(*in_, c);
    }
  } catch (const std::exception&) {
    c.done = true;
  }
}

void ProxyHandler::on_close(const net::FlowInfo& info, const net::FlowStats& stats) {
  if (in_->options.budget != nullptr) {
    in_->options.budget->flow_closed(info.id, stats.bytes_up);
  }
  auto it = by_flow_.find(info.id);
  if (it == by_flow_.end()) {
    return;
  }
  const uint64_t id = it->second;
  by_flow_.erase(it);
  auto cit = conns_.find(id);
  if (cit == conns_.end()) {
    return;
  }
  Conn& c = *cit->second;
  read_refusal(c);
  // The translator is done with the box once both FINs are acknowledged, but what the box sent
  // before its FIN may still be in our end of the socketpair or our buffers, on its way up:
  // a splice reads the rest and finishes (its done rule, or the idle sweep) instead of dropping
  // it. Stalled box->host bytes of a peer-closes-first stream were lost this way.
  const bool splicing = c.mode == Mode::kSplice || c.mode == Mode::kTunnel;
  if (!stats.reset && splicing && c.box.open() && !c.box.failed() && c.up.open() &&
      !c.up.failed()) {
    try {
      for (int i = 0; i < 1024 && c.box.fill(kReadBudget) && !c.box.fd_eof && !c.box.failed();
           ++i) {
      }
    } catch (const std::exception&) {
      c.done = true;
    }
    c.box.eof = c.box.fd_eof = c.box.shut = true;
    if (c.box.watch != 0) {
      in_->loop.unwatch(c.box.watch);
      c.box.watch = 0;
    }
    c.box.close_fd();
    if (!c.done) {
      run(c);
    }
    if (!c.done) {
      update_interest(c);
    }
    if (!c.done) {
      return;
    }
  }
  destroy(id);
}

void ProxyHandler::destroy(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) {
    return;
  }
  Conn& c = *it->second;
  if (c.resolving != 0) {
    in_->resolver->cancel(c.resolving);
    c.resolving = 0;
  }
  const auto& x = c.http;
  if (c.h2) {
    h2_abort(*in_, c);  // its streams still open: one "aborted" line each
  }
  if (c.mode == Mode::kHttp && (x.req != Exchange::Req::kHead || x.resp != Exchange::Resp::kIdle)) {
    settle_usage(*in_, c);
    audit_request(*in_, c, "aborted", c.box.failed() ? c.box.error : "connection closed");
  }
  for (Side* s : {&c.box, &c.up}) {
    if (s->watch != 0) {
      in_->loop.unwatch(s->watch);
      s->watch = 0;
    }
  }
  if (c.up.tls && c.up.tls->handshake_done() && c.up.tls->resumed()) {
    ++counters_.upstream_resumed;
  }
  auto f = by_flow_.find(c.info.id);
  if (f != by_flow_.end() && f->second == id) {
    by_flow_.erase(f);
  }
  freed_since_trim_ += sizeof(Conn) + c.box.use().capacity + c.up.use().capacity;
  const bool slot = c.slot;
  if (c.slot_wait) {
    auto& q = in_->slot_waiters;
    q.erase(std::remove(q.begin(), q.end(), id), q.end());
  }
  conns_.erase(it);
  if (slot) {
    --in_->slots_taken;
    grant_slots();
  }
}

void ProxyHandler::grant_slots() {
  auto& q = in_->slot_waiters;
  while (in_->slots_taken < in_->options.max_intercepted && !q.empty()) {
    const uint64_t id = q.front();
    q.pop_front();
    auto it = conns_.find(id);
    if (it == conns_.end()) {
      continue;
    }
    Conn& c = *it->second;
    c.slot_wait = false;
    c.slot = true;
    ++in_->slots_taken;
    // Its handshake deadline and its stall count from now, not from when it started waiting.
    c.opened = c.last_activity = Clock::now();
    c.yielded = true;  // update_interest asks for the EPOLLOUT that runs it
    update_interest(c);
  }
}

namespace {

bool stalled_for_slot(const Conn& c) {
  // A request sent whole and its answer awaited is not stalled by the box or by an upstream
  // that stopped reading: a model's API may think for minutes. Everything else (a handshake
  // not finished, a request head or body not complete, bytes the upstream does not take, an
  // idle kept-alive connection) can be ended without losing an answer.
  const bool awaiting =
      c.mode == Mode::kHttp && c.box.handshake_done() && c.http.req == Exchange::Req::kDone &&
      c.up.unsent() == 0 &&
      (c.http.resp == Exchange::Resp::kIdle || c.http.resp == Exchange::Resp::kHead);
  return c.slot && c.mode != Mode::kClosing && !awaiting;
}

}  // namespace

void ProxyHandler::evict_stalled(Clock::time_point now) {
  size_t waiting = in_->slot_waiters.size();
  for (auto& [id, cp] : conns_) {
    if (waiting == 0) {
      break;
    }
    Conn& c = *cp;
    if (stalled_for_slot(c) && now - c.last_activity >= in_->options.slot_stall) {
      ++counters_.slot_evictions;
      --waiting;
      drop(*in_, c,
           fmt::format(
               "intercepted flow stalled for {} s while {} waited for an interception "
               "slot (network.max_intercepted = {})",
               std::chrono::duration_cast<std::chrono::seconds>(now - c.last_activity).count(),
               waiting + 1, in_->options.max_intercepted));
      c.done = true;  // the slot is free now; the sweep destroys it
    }
  }
}

BufferUse ProxyHandler::buffer_use() const {
  BufferUse total;
  for (const auto& [id, c] : conns_) {
    for (const Side* s : {&c->box, &c->up}) {
      const BufferUse u = s->use();
      total.bytes += u.bytes;
      total.capacity += u.capacity;
    }
  }
  return total;
}

void ProxyHandler::update_interest(Conn& c) {
  for (Side* s : {&c.box, &c.up}) {
    const bool box_side = s == &c.box;
    if (s->failed() && s->open()) {
      s->close_fd();  // a failed socket may stay "ready" (EPOLLERR) forever: let it go now
    }
    if (!s->open()) {
      if (s->watch != 0) {
        in_->loop.unwatch(s->watch);
        s->watch = 0;
      }
      continue;
    }
    uint32_t ev = 0;
    if (can_read(in_->options, c, *s)) {
      ev |= EPOLLIN;
    }
    if (s->connecting || s->unsent() > 0 || (!s->out.empty() && s->handshake_done()) ||
        (s->want_shut && !s->shut)) {
      ev |= EPOLLOUT;
    }
    if (c.yielded && !c.done && (!box_side || !c.up.open() || c.up.failed())) {
      ev |= EPOLLOUT;  // a writable socket: the next loop iteration runs the flow again
    }
    if (s->watch == 0) {
      const uint64_t id = c.id;
      auto w = in_->loop.watch_fd(
          s->fd.get(), ev, [this, id, box_side](uint32_t events) { on_fd(id, box_side, events); });
      if (!w) {
        c.done = true;
        return;
      }
      s->watch = *w;
      s->interest = ev;
    } else if (ev != s->interest) {
      (void)in_->loop.modify(s->watch, ev);
      s->interest = ev;
    }
  }
}

void ProxyHandler::run(Conn& c) noexcept {
  // Ending on the round limit with work left must not end the flow's progress: the bytes may
  // sit in our buffers with no fd event to come (rx at its cap, the other side all written).
  // `yielded` asks update_interest for an EPOLLOUT that fires on the next loop iteration, so
  // the flow goes on after the others had their turn.
  c.yielded = true;
  try {
    for (int round = 0; round < kMaxRounds && !c.done; ++round) {
      bool progress = false;
      for (Side* s : {&c.box, &c.up}) {
        if (can_read(in_->options, c, *s)) {
          progress = s->fill(read_budget(in_->options, c, *s)) || progress;
        }
      }
      switch (c.mode) {
        case Mode::kClassify:
          progress = classify(*in_, c) || progress;
          break;
        case Mode::kSplice:
        case Mode::kTunnel:
          progress = splice(*in_, c) || progress;
          break;
        case Mode::kHttp:
          progress = http_step(*in_, c) || progress;
          break;
        case Mode::kAlpn:
          progress = alpn_step(*in_, c) || progress;
          break;
        case Mode::kH2:
          progress = h2_step(*in_, c) || progress;
          break;
        case Mode::kClosing:
          progress = closing_step(c) || progress;
          break;
      }
      progress = c.box.flush() || progress;
      progress = c.up.flush() || progress;
      if (!progress) {
        c.yielded = false;
        break;
      }
      c.last_activity = Clock::now();
    }
  } catch (const std::exception& e) {
    ++counters_.internal_errors;
    base::log::debug("proxy #{}: internal error: {}", c.info.id, e.what());
    c.done = true;
  }
}

// The loop's callbacks: nothing may escape them (an allocation failure closes what it can and
// is counted), the loop and every other flow go on.
void ProxyHandler::on_fd(uint64_t id, bool box_side, uint32_t events) noexcept {
  try {
    handle_fd(id, box_side, events);
  } catch (...) {
    ++counters_.internal_errors;
  }
}

void ProxyHandler::on_flush_timer() noexcept {
  // The loop already dropped this fired one-shot timer; unwatching it again is harmless.
  in_->loop.unwatch(flush_timer_);
  flush_timer_ = 0;
  try {
    handle_flush_timer();
  } catch (...) {
    ++counters_.internal_errors;
  }
}

void ProxyHandler::on_sweep() noexcept {
  try {
    handle_sweep();
  } catch (...) {
    ++counters_.internal_errors;
  }
}

void ProxyHandler::handle_fd(uint64_t id, bool box_side, uint32_t events) {
  auto it = conns_.find(id);
  if (it == conns_.end()) {
    return;
  }
  Conn& c = *it->second;
  Side& s = box_side ? c.box : c.up;
  if (s.connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
    s.finish_connect();
  }
  if ((events & EPOLLHUP) != 0 && !s.connecting) {
    // Both directions are closed: take what is still queued, then drop the fd (a hung-up fd
    // stays "ready" for epoll forever).
    try {
      for (int i = 0; i < 1024 && s.fill(kReadBudget) && !s.fd_eof && !s.failed(); ++i) {
      }
    } catch (const std::exception&) {
      c.done = true;
    }
    if (!s.failed() && s.unsent() > 0) {
      s.error = "peer hung up";
    }
    s.eof = s.fd_eof = s.shut = true;
    if (s.watch != 0) {
      in_->loop.unwatch(s.watch);
      s.watch = 0;
    }
    s.close_fd();
    // Nothing can reach the box any more, but what it sent before its FIN may still be on its
    // way up: a splice keeps going until that is flushed (then the done rule in splice() holds).
    // Ending here lost up to a buffer of the box's last bytes when the upstream had already sent
    // its FIN (the peer-fin-first half-close test, intermittently).
    const bool draining = (c.mode == Mode::kSplice || c.mode == Mode::kTunnel) && !c.box.failed() &&
                          (!c.box.rx.empty() || c.up.pending() > 0);
    if (box_side && !draining) {
      c.done = true;
    }
  }
  if (!c.done) {
    run(c);
  }
  if (c.done) {
    destroy(id);
    return;
  }
  update_interest(c);
  if (c.done) {
    destroy(id);
    return;
  }
  if (flush_timer_ == 0 && holds_bytes(c)) {
    arm_flush_timer();
  }
}

void ProxyHandler::arm_flush_timer() {
  auto w = in_->loop.add_timer(in_->options.scrub_hold, std::chrono::milliseconds(0),
                               [this](uint64_t) { on_flush_timer(); });
  flush_timer_ = w ? *w : 0;
}

void ProxyHandler::handle_flush_timer() {
  const auto now = Clock::now();
  bool again = false;
  std::vector<uint64_t> ids;
  for (auto& [id, c] : conns_) {
    if (holds_bytes(*c)) {
      ids.push_back(id);
    }
  }
  for (uint64_t id : ids) {
    auto it = conns_.find(id);
    if (it == conns_.end()) {
      continue;
    }
    Conn& c = *it->second;
    release_expired(*in_, c, now);
    run(c);
    if (c.done) {
      destroy(id);
      continue;
    }
    update_interest(c);
    again = again || holds_bytes(c);
  }
  if (again) {
    arm_flush_timer();
  }
}

void ProxyHandler::handle_sweep() {
  const auto now = Clock::now();
  const auto& o = in_->options;
  if (!in_->slot_waiters.empty()) {
    evict_stalled(now);
  }
  std::vector<uint64_t> ids;
  ids.reserve(conns_.size());
  for (auto& [id, c] : conns_) {
    ids.push_back(id);
  }
  for (uint64_t id : ids) {
    auto it = conns_.find(id);
    if (it == conns_.end()) {
      continue;
    }
    Conn& c = *it->second;
    if (c.done) {
      destroy(id);
      continue;
    }
    try {
      if (c.mode == Mode::kClassify && !c.slot_wait && now - c.opened > o.first_bytes_timeout) {
        ++counters_.timeouts;
        drop(*in_, c, "no TLS ClientHello or HTTP request within the first-bytes timeout");
      } else if (c.mode == Mode::kHttp && c.http.req == Exchange::Req::kHead && !c.box.rx.empty() &&
                 c.http.head_started != Clock::time_point{} &&
                 now - c.http.head_started > o.head_timeout) {
        ++counters_.timeouts;
        answer(*in_, c, 408, "request blocked: request head not complete in time");
        audit_request(*in_, c, "denied", "request head timeout");
      } else if ((c.mode == Mode::kHttp || c.mode == Mode::kH2 || c.mode == Mode::kAlpn) &&
                 (!c.box.handshake_done() || c.mode == Mode::kAlpn) &&
                 now - c.opened > o.head_timeout) {
        ++counters_.timeouts;
        drop(*in_, c, "TLS handshake with the box not complete in time");
      } else if (c.mode == Mode::kClosing && now - c.last_activity > kClosingGrace) {
        c.done = true;
      } else if (now - c.last_activity > o.idle_timeout) {
        ++counters_.timeouts;
        drop(*in_, c, "idle timeout");
      } else {
        if (now - c.last_activity >= o.sweep_interval) {
          // Idle for a sweep (quiet or stalled): its buffers shrink to the bytes they hold, so
          // such a flow costs its state and its bytes, not the room a burst grew.
          const size_t freed = c.box.release() + c.up.release();
          counters_.released += freed;
          freed_since_trim_ += freed + park_upstream(*in_, c, now);
        }
        continue;
      }
    } catch (const std::exception&) {
      c.done = true;
    }
    if (!c.done) {
      run(c);
    }
    if (c.done) {
      destroy(id);
    } else {
      update_interest(c);
    }
  }
  // glibc keeps freed chunks inside its heap resident until the top of the heap is free: after
  // many flows shrank or closed, give those pages back (measured: a fifth of the RSS of 1024
  // stalled intercepted flows; docs/BENCHMARKS.md, "Memory"). Once a sweep at most, and only
  // after a burst, so a busy data path never pays for it.
  if (freed_since_trim_ >= kTrimAfter) {
    freed_since_trim_ = 0;
    ++counters_.heap_trims;
    (void)::malloc_trim(0);
  }
}

// --- helpers shared by the connection code -----------------------------------------------------

size_t rx_limit(const ProxyOptions& o, const Conn& c, const Side& s) {
  const bool head = &s == &c.box ? c.mode == Mode::kClassify ||
                                       (c.mode == Mode::kHttp && c.http.req == Exchange::Req::kHead)
                                 : c.mode == Mode::kHttp && c.http.resp == Exchange::Resp::kHead;
  return head ? o.buffer : c.cap;
}

void close_side(ProxyHandler::Internals& in, Side& s) {
  if (s.watch != 0) {
    in.loop.unwatch(s.watch);
    s.watch = 0;
  }
  s.close_fd();
  s.rx.clear();
  s.discard_output();
  s.connecting = false;
  s.eof = s.fd_eof = s.shut = true;
}

void drop(ProxyHandler::Internals& in, Conn& c, std::string_view why) {
  if (!why.empty()) {
    ++in.counters.dropped;
    in.audit.emit(audit::Event("proxy.drop")
                      .num("id", static_cast<int64_t>(c.info.id))
                      .str("host", c.info.name)
                      .num("port", c.info.orig_port)
                      .str("reason", why));
    base::log::debug("proxy #{} {}:{} dropped: {}", c.info.id, c.info.name, c.info.orig_port, why);
  }
  close_side(in, c.up);
  c.mode = Mode::kClosing;
}

void answer(ProxyHandler::Internals& in, Conn& c, int status, std::string_view line) {
  ++in.counters.denied;
  c.http.status = status;
  c.box.rx.clear();
  c.box.send(http::denial_response(status, line));
  close_side(in, c.up);
  c.mode = Mode::kClosing;
}

void audit_request(ProxyHandler::Internals& in, Conn& c, std::string_view decision,
                   std::string_view reason) {
  audit_exchange(in, c, c.http, decision, reason);
}

void audit_exchange(ProxyHandler::Internals& in, const Conn& c, const Exchange& x,
                    std::string_view decision, std::string_view reason) {
  audit::Event e("http.request");
  e.num("id", static_cast<int64_t>(c.info.id))
      .str("host", c.info.name)
      .str("scheme", c.tls ? "https" : "http")
      .str("method", x.method)
      .str("path", x.path)
      .num("status", x.status)
      .num("bytes_up", static_cast<int64_t>(x.body_up))
      .num("bytes_down", static_cast<int64_t>(x.body_down))
      .strs("credentials", x.credentials)
      .str("rule", x.rule)
      .str("decision", decision);
  if (!reason.empty()) {
    e.str("reason", reason);
  }
  in.audit.emit(e);
}

}  // namespace agentbox::proxy
