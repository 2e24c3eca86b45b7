// TCP translator: box TCP segments <-> host stream sockets, with no retransmit buffer of its own.
// The stages are described in include/agentbox/net/tcp.hpp; docs/NETWORK.md has the long form.
#include "agentbox/net/tcp.hpp"

#include <fmt/core.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "agentbox/base/error.hpp"
#include "agentbox/base/log.hpp"

namespace agentbox::net {

namespace {

constexpr uint8_t kOurWscale = 7;
// Bytes peeked per call. Each peek at an offset walks the socket's queue up to it, so bigger peeks
// cost less kernel time per byte (measured: stack CPU per 4 GiB download about 20% lower than with
// 256 KiB). Allocated uninitialised: pages count towards RSS only once a download uses them.
constexpr size_t kPeekChunk = 1024 * 1024;
// A window below this (or a quarter of the buffer) is "small": check on a short timer whether
// it reopened.
constexpr uint32_t kLowWindow = 256 * 1024;
constexpr std::chrono::microseconds kWndCheckFirst{500};
// What the kernel charges a send buffer beyond the payload, per segment (sk_buff, shared info,
// allocation rounding; measured up to ~1.2 KiB for an AF_UNIX skb of 1460 bytes).
constexpr uint32_t kSkbOverhead = 2048;
constexpr std::chrono::microseconds kWndCheckMax{64000};
// Edge-triggered: a socket whose queue holds only bytes already sent (awaiting the box's ACK) is
// level-readable forever; we re-peek on ACKs and timers ourselves and need epoll only for news.
constexpr uint32_t kInterest = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

bool seq_lt(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) < 0;
}
bool seq_le(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) <= 0;
}

uint32_t random_iss() {
  static std::mt19937 rng{std::random_device{}()};
  return static_cast<uint32_t>(rng());
}

}  // namespace

struct TcpTranslator::Flow {
  enum class State : uint8_t { kConnecting, kSynRcvd, kEstablished };
  FlowInfo info;
  Key key{};
  base::UniqueFd fd;
  Mac box_mac{};
  State state = State::kConnecting;
  uint32_t iss = 0;
  uint32_t rcv_nxt = 0;  // next byte expected from the box (what we acknowledge)
  uint32_t snd_una = 0;  // oldest byte the box has not acknowledged
  uint32_t snd_nxt = 0;  // next byte to send (a sent FIN counts one)
  uint32_t snd_max = 0;  // highest snd_nxt ever (a rewind lowers snd_nxt, not this)
  uint32_t eof_seq = 0;  // snd_nxt at which the host's EOF was seen
  uint32_t box_wnd = 0;  // bytes, scaled
  uint8_t box_wscale = 0;
  bool wscale_ok = false;
  uint16_t mss = 536;
  bool box_fin = false;
  bool host_eof = false;
  bool rdhup = false;
  // The socket may hold bytes not yet peeked. Cleared when a peek drains it, set again by
  // EPOLLIN (edge-triggered: one per arrival) and by a rewind, so an ACK from the box costs no
  // peek that would only say EAGAIN.
  // Starts false: EPOLL_CTL_ADD reports bytes already queued as an edge of its own, so the
  // handshake's end needs no peek that would only say EAGAIN.
  bool readable = false;
  bool fin_sent = false;
  bool fin_acked = false;
  bool sock_full = false;
  // The window last computed was cut by bytes still queued in the socket (at least a segment
  // less than an empty buffer would give): a drain (EPOLLOUT) is then worth a window update.
  bool wnd_constrained = false;
  // SO_PEEK_OFF is switched on only when a peek first has bytes in flight to skip: a short
  // exchange whose answer fits one peek never needs it (one setsockopt less per connection).
  enum class PeekOff : uint8_t { kUntried, kOn, kOff };
  PeekOff peek_off = PeekOff::kUntried;
  int sndbuf = 64 * 1024;  // refreshed by every send_space() (SO_MEMINFO)
  // send_space() as last measured, still a safe lower bound: nothing was written to the socket
  // since (writing is the only thing that takes space; the peer reading and autotuning only give
  // it back). Cleared by every write and before each check that must see space come back
  // (EPOLLOUT, the window-check timer), so those still measure.
  std::optional<uint32_t> space;
  uint32_t dup_acks = 0;
  std::optional<Clock::time_point> rto_at;
  std::chrono::milliseconds rto{1000};
  int retries = 0;
  std::optional<Clock::time_point> persist_at;
  // Window-update check: armed while the window we last offered is small, because a socket that
  // drains without a failed send() raises no EPOLLOUT edge and the box would wait for its own
  // persist timer (200 ms and up) to learn that the window reopened.
  std::optional<Clock::time_point> wnd_check_at;
  std::chrono::microseconds wnd_check_every{kWndCheckFirst};
  uint32_t adv_wnd = 0;      // bytes offered in the last segment
  bool ack_pending = false;  // an ACK is held back until the end of the tap batch
  bool handed_back = false;  // the handler's upstream socket replaced on_open's (hand_back)
  std::optional<Clock::time_point> queued_at;  // what deadlines_ holds for this flow
  FlowStats stats;

  [[nodiscard]] std::optional<Clock::time_point> earliest_timer() const {
    std::optional<Clock::time_point> best;
    for (const auto& t : {rto_at, persist_at, wnd_check_at}) {
      if (t && (!best || *t < *best)) {
        best = t;
      }
    }
    return best;
  }

  [[nodiscard]] uint32_t data_inflight() const {
    return snd_nxt - snd_una - (fin_sent && !fin_acked ? 1 : 0);
  }
};

TcpTranslator::TcpTranslator(TcpConfig config, const policy::EgressPolicy& policy,
                             const SyntheticPool& pool, FlowHandler& handler, Poller& poller,
                             FrameSink& sink, audit::Sink& audit)
    : config_(config),
      policy_(policy),
      pool_(pool),
      handler_(handler),
      poller_(poller),
      sink_(sink),
      audit_(audit),
      data_buf_(new std::byte[kPeekChunk]),
      data_(data_buf_.get(), kPeekChunk),
      budget_(config.buffer_budget, config.max_flows) {
  handler_.attach(this);
}

TcpTranslator::~TcpTranslator() {
  handler_.attach(nullptr);
  // Flows still open when the session ends get their close line too (issue 14: every
  // net.connect has a net.close), in the order they were opened.
  std::vector<uint64_t> open;
  open.reserve(flows_.size());
  for (auto& [id, f] : flows_) {
    poller_.unwatch(f->fd.get());
    open.push_back(id);
  }
  std::sort(open.begin(), open.end());
  for (uint64_t id : open) {
    audit_.emit(close_event(id, *flows_[id], false).str("reason", "session end"));
  }
  for (base::UniqueFd& fd : closing_) {
    poller_.unwatch(fd.get());
  }
}

// Every public entry point that may change a flow's timers syncs that flow on its way out (all
// its return paths), so deadlines_ never misses a change made deep inside.
struct TcpTranslator::SyncOnExit {
  TcpTranslator& t;
  uint64_t id;
  ~SyncOnExit() { t.sync_deadline(id); }
};

void TcpTranslator::sync_deadline(uint64_t id) {
  auto it = flows_.find(id);
  if (it == flows_.end()) {
    return;  // finish() removed it from deadlines_
  }
  Flow& f = *it->second;
  auto next = f.earliest_timer();
  if (next != f.queued_at) {
    deadlines_.set(id, next);
    f.queued_at = next;
  }
}

base::Status TcpTranslator::hand_back(uint64_t id, base::UniqueFd& fd) {
  SyncOnExit sync{*this, id};
  auto it = flows_.find(id);
  if (it == flows_.end()) {
    return base::Error::msg("no such flow");
  }
  Flow& f = *it->second;
  if (!fd) {
    return base::Error::msg("no socket to hand back");
  }
  if (f.box_fin || f.host_eof || f.rdhup || f.fin_sent) {
    return base::Error::msg("the flow is half-closed");
  }
  // Host -> box: the box acknowledged everything it got from the old socket and nothing else is
  // queued there (a peeked byte would otherwise be sent twice or never). Box -> host: the handler
  // read everything the translator wrote (what it sends upstream is then in order before what
  // the translator writes to the new socket).
  int inq = 0;
  int outq = 0;
  if (f.snd_nxt != f.snd_una || f.snd_max != f.snd_una) {
    return base::Error::msg("host bytes not yet acknowledged by the box");
  }
  if (ioctl(f.fd.get(), SIOCINQ, &inq) != 0 || ioctl(f.fd.get(), SIOCOUTQ, &outq) != 0 ||
      inq != 0 || outq != 0) {
    return base::Error::msg("bytes still queued in the old socket");
  }
  // Unwatch before the old fd is closed and the new one (perhaps the same number later) joins.
  poller_.unwatch(f.fd.get());
  f.fd = std::move(fd);
  f.handed_back = true;
  f.readable = false;  // EPOLL_CTL_ADD reports what is already queued as an edge of its own
  f.sock_full = false;
  f.wnd_constrained = false;
  f.space.reset();
  f.peek_off = config_.use_peek_off ? Flow::PeekOff::kUntried : Flow::PeekOff::kOff;
  int one = 1;
  (void)setsockopt(f.fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ++counters_.handed_back;
  poller_.watch(f.fd.get(), kInterest, id);
  base::log::debug("tcp #{} {}:{} continues on the handler's upstream socket", id, f.info.name,
                   f.info.orig_port);
  if (f.state == Flow::State::kEstablished) {
    send_ack(f);  // the window is the new socket's now
  }
  return base::ok();
}

uint32_t TcpTranslator::f_snd_nxt(const Flow& f) {
  return f.snd_nxt;
}

void TcpTranslator::on_segment(const Ipv4& ip, const Tcp& seg, const Mac& box_mac,
                               Clock::time_point now) {
  ++counters_.segments_in;
  if (ip.src != config_.box_ip) {
    return;  // spoofed source: the box has one address
  }
  auto it = by_key_.find(Key{seg.sport, ip.dst, seg.dport});
  if (it == by_key_.end()) {
    if (seg.has(tcpflag::kSyn) && !seg.has(tcpflag::kAck) && !seg.has(tcpflag::kRst)) {
      on_syn(ip, seg, box_mac, now);
    } else if (!seg.has(tcpflag::kRst)) {
      send_rst_for(ip, seg, box_mac);
    }
    return;
  }
  SyncOnExit sync{*this, it->second};
  on_flow_segment(*flows_.at(it->second), seg, now);
}

void TcpTranslator::send_rst_for(const Ipv4& ip, const Tcp& seg, const Mac& box_mac) {
  TcpOut t;
  t.src = ip.dst;
  t.dst = ip.src;
  t.sport = seg.dport;
  t.dport = seg.sport;
  if (seg.has(tcpflag::kAck)) {
    t.seq = seg.ack;
    t.flags = tcpflag::kRst;
  } else {
    t.ack = seg.seq + static_cast<uint32_t>(seg.payload.size()) + (seg.has(tcpflag::kSyn) ? 1 : 0) +
            (seg.has(tcpflag::kFin) ? 1 : 0);
    t.flags = tcpflag::kRst | tcpflag::kAck;
  }
  build_tcp(frame_, L2{.src = config_.gateway_mac, .dst = box_mac}, t, {}, config_.tx_checksum);
  ++counters_.resets_sent;
  ++counters_.segments_out;
  sink_.send_frame(frame_);
}

void TcpTranslator::on_syn(const Ipv4& ip, const Tcp& seg, const Mac& box_mac,
                           Clock::time_point now) {
  FlowInfo info;
  info.orig_port = seg.dport;
  info.synthetic_dst = ip.dst;
  info.box_src = Endpoint{ip.src, seg.sport};
  policy::Decision d;
  if (pool_.contains(ip.dst)) {
    auto name = pool_.name_of(ip.dst);
    if (!name) {
      d.reason = "synthetic address not handed out in this session";
      info.name = ip4_to_string(ip.dst);
    } else {
      info.name = *name;
      d = policy_.decide(*name, seg.dport);
      if (!d.allowed && once_ != nullptr && once_->take(*name)) {
        d = {.allowed = true, .rule = {}, .rule_text = "approved once", .reason = {}};
      }
      if (!d.allowed && learn_port_ && learn_port_(*name, seg.dport)) {
        d = policy_.decide(*name, seg.dport);
      }
    }
  } else {
    info.literal = true;
    info.name = ip4_to_string(ip.dst);
    d = policy_.decide_address(policy::IpAddr::v4(ip.dst), seg.dport);
  }
  if (d.allowed && flows_.size() >= config_.max_flows) {
    d = policy::Decision{.allowed = false, .rule = {}, .rule_text = {}, .reason = "too many flows"};
  }
  if (!d.allowed) {
    ++counters_.flows_denied;
    audit_.emit(audit::Event("net.deny")
                    .str("proto", "tcp")
                    .str("name", info.name)
                    .str("dst", ip4_to_string(ip.dst))
                    .num("port", seg.dport)
                    .str("reason", d.reason)
                    .coalesce(fmt::format("{}:{}", info.name, seg.dport)));
    base::log::debug("deny tcp {}:{} ({})", info.name, seg.dport, d.reason);
    send_rst_for(ip, seg, box_mac);
    return;
  }
  info.rule = d.rule_text;
  info.id = next_id_++;
  info.buffers = budget_.acquire(info.id);
  auto opened = handler_.on_open(info);
  if (!opened) {
    budget_.release(info.id);
    ++counters_.flows_failed;
    audit_.emit(audit::Event("net.fail")
                    .num("id", static_cast<int64_t>(info.id))
                    .str("name", info.name)
                    .num("port", seg.dport)
                    .str("error", opened.error().message()));
    base::log::debug("tcp {}:{} refused by handler: {}", info.name, seg.dport,
                     opened.error().message());
    send_rst_for(ip, seg, box_mac);
    return;
  }
  auto f = std::make_unique<Flow>();
  f->info = std::move(info);
  f->key = Key{seg.sport, ip.dst, seg.dport};
  f->fd = std::move(opened->fd);
  f->box_mac = box_mac;
  f->iss = random_iss();
  f->snd_una = f->snd_nxt = f->snd_max = f->iss;
  f->rcv_nxt = seg.seq + 1;
  f->wscale_ok = seg.options.wscale.has_value();
  f->box_wscale = seg.options.wscale.value_or(0);
  f->box_wnd = seg.window;  // never scaled in a SYN (RFC 7323)
  uint16_t our_mss = static_cast<uint16_t>(std::min<uint32_t>(config_.mtu - 40, 65495));
  f->mss = std::min<uint16_t>(seg.options.mss.value_or(536), our_mss);
  f->rto = config_.rto_initial;
  f->peek_off = config_.use_peek_off ? Flow::PeekOff::kUntried : Flow::PeekOff::kOff;
  ++counters_.flows_opened;
  uint64_t id = f->info.id;
  Flow& flow = *f;
  by_key_[f->key] = id;
  flows_[id] = std::move(f);
  bool connected = opened->connected;
  if (!connected) {
    // A non-blocking connect to loopback (or any local address) runs the whole handshake inside
    // connect(2) and is usually complete when it returns EINPROGRESS: answer the SYN now, not
    // after an epoll round trip and SO_ERROR. POLLOUT without POLLERR/POLLHUP means established;
    // anything else (still connecting, refused) is left to on_socket as before.
    pollfd p{.fd = flow.fd.get(), .events = POLLOUT, .revents = 0};
    connected = ::poll(&p, 1, 0) == 1 && (p.revents & (POLLOUT | POLLERR | POLLHUP)) == POLLOUT;
  }
  if (connected) {
    flow.state = Flow::State::kSynRcvd;
    send_segment(flow, tcpflag::kSyn | tcpflag::kAck, flow.iss, {}, true);
    flow.rto_at = now + flow.rto;
  }
  // The rest waits until the SYN-ACK is out: a sequential client is blocked on it, and its next
  // step runs on the other core while we do this. EPOLL_CTL_ADD reports whatever the socket
  // already has (bytes, EOF, an error, a completed connect) as an edge of its own, so nothing
  // that happened in between is missed.
  poller_.watch(flow.fd.get(), kInterest, id);
  int one = 1;
  (void)setsockopt(flow.fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);  // TCP only
  audit_.emit(audit::Event("net.connect")
                  .num("id", static_cast<int64_t>(id))
                  .str("proto", "tcp")
                  .str("name", flow.info.name)
                  .num("port", seg.dport)
                  .str("dst", ip4_to_string(ip.dst))
                  .num("src_port", seg.sport)
                  .str("rule", flow.info.rule));
  base::log::debug("tcp #{} {}:{} allowed by `{}`", id, flow.info.name, seg.dport, flow.info.rule);
  sync_deadline(id);
}

void TcpTranslator::on_flow_segment(Flow& f, const Tcp& seg, Clock::time_point now) {
  if (seg.has(tcpflag::kRst)) {
    // RFC 5961: only an in-window RST counts; anything else could be blind injection.
    uint32_t wnd = std::max<uint32_t>(window_field(f), 1u) << (f.wscale_ok ? kOurWscale : 0);
    if (seq_le(f.rcv_nxt, seg.seq) && seq_lt(seg.seq, f.rcv_nxt + wnd)) {
      linger lg{1, 0};  // close now with RST to the host peer
      (void)setsockopt(f.fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      finish(f.info.id, true);
    }
    return;
  }
  if (seg.has(tcpflag::kSyn)) {
    if (f.state == Flow::State::kSynRcvd && seg.seq + 1 == f.rcv_nxt) {
      send_segment(f, tcpflag::kSyn | tcpflag::kAck, f.iss, {}, true);  // SYN-ACK was lost
    } else if (f.state != Flow::State::kConnecting) {
      send_ack(f);  // challenge ACK
    }
    return;
  }
  if (f.state == Flow::State::kConnecting) {
    return;  // nothing is acknowledged yet; the box will retransmit
  }
  if (!process_ack(f, seg, now)) {
    return;
  }
  if (!process_payload(f, seg)) {
    return;
  }
  send_data(f, now);
}

bool TcpTranslator::process_ack(Flow& f, const Tcp& seg, Clock::time_point now) {
  if (!seg.has(tcpflag::kAck)) {
    return true;
  }
  if (f.state == Flow::State::kSynRcvd) {
    if (seg.ack != f.iss + 1) {
      return true;  // not for our SYN-ACK; ignore
    }
    f.state = Flow::State::kEstablished;
    f.snd_una = f.snd_nxt = f.snd_max = f.iss + 1;
    f.rto_at.reset();
    f.retries = 0;
  }
  if (seq_lt(f.snd_max, seg.ack)) {
    send_ack(f);  // acknowledges something never sent
    return true;
  }
  uint32_t wnd = uint32_t{seg.window} << (f.wscale_ok ? f.box_wscale : 0);
  if (seq_lt(f.snd_una, seg.ack)) {
    uint32_t acked = seg.ack - f.snd_una;
    if (f.fin_sent || (f.host_eof && seg.ack == f.eof_seq + 1)) {
      if (seg.ack == f.eof_seq + 1) {
        f.fin_acked = true;
        f.fin_sent = true;
        acked -= 1;
      }
    }
    // Discard the acknowledged bytes from the socket: they were only ever peeked. MSG_TRUNC
    // makes TCP drop them without copying (a second copy of every downloaded byte otherwise);
    // AF_UNIX ignores the flag and copies into the buffer, so one call serves both.
    uint32_t left = acked;
    while (left > 0) {
      ssize_t n = recv(f.fd.get(), data_.data(), std::min<size_t>(left, data_.size()),
                       MSG_DONTWAIT | MSG_TRUNC);
      if (n <= 0) {
        reset_flow(f, "socket lost acknowledged data");
        return false;
      }
      left -= static_cast<uint32_t>(n);
    }
    f.stats.bytes_down += acked;
    f.snd_una = seg.ack;
    if (seq_lt(f.snd_nxt, f.snd_una)) {
      f.snd_nxt = f.snd_una;  // acknowledged past a rewind
    }
    // No SO_PEEK_OFF update: a plain recv moves the peek offset back by what it consumed (TCP
    // and AF_UNIX alike, clamped at 0 after a rewind), so it already equals data_inflight().
    f.dup_acks = 0;
    f.retries = 0;
    f.rto = config_.rto_initial;
    f.rto_at = f.snd_una == f.snd_nxt ? std::nullopt : std::optional(now + f.rto);
  } else if (seg.ack == f.snd_una && seg.payload.empty() && !seg.has(tcpflag::kFin) &&
             wnd == f.box_wnd && f.snd_nxt != f.snd_una) {
    if (++f.dup_acks == 3) {
      ++counters_.retransmits;
      rewind(f);
    }
  }
  f.box_wnd = wnd;
  if (wnd > 0) {
    f.persist_at.reset();
  }
  uint64_t id = f.info.id;
  maybe_close(f);  // may destroy f
  return flows_.count(id) != 0;
}

bool TcpTranslator::process_payload(Flow& f, const Tcp& seg) {
  Bytes data = seg.payload;
  bool fin = seg.has(tcpflag::kFin);
  uint32_t seq = seg.seq;
  if (data.empty() && !fin) {
    if (seq_lt(seq, f.rcv_nxt)) {
      send_ack(f);  // keep-alive probe (seq = rcv_nxt - 1)
    }
    return true;
  }
  if (f.box_fin) {
    send_ack(f);  // retransmitted FIN or data after it
    return true;
  }
  if (seq_lt(seq, f.rcv_nxt)) {
    uint32_t trim = f.rcv_nxt - seq;
    if (trim > data.size() || (trim == data.size() && !fin)) {
      send_ack(f);  // entirely old: a retransmission of what we have
      return true;
    }
    data = data.subspan(trim);
    seq = f.rcv_nxt;
  }
  if (seq != f.rcv_nxt) {
    ++counters_.out_of_order;
    send_ack(f);  // duplicate ACK; no reassembly queue, the box retransmits
    return true;
  }
  size_t written = 0;
  if (!data.empty()) {
    ssize_t n = send(f.fd.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      reset_flow(f, base::errno_name(errno));
      return false;
    }
    written = n < 0 ? 0 : static_cast<size_t>(n);
    f.space.reset();
    f.rcv_nxt += static_cast<uint32_t>(written);
    f.stats.bytes_up += written;
    f.sock_full = written < data.size();
    if (f.sock_full) {
      ++counters_.short_writes;
    }
  }
  if (fin && written == data.size()) {
    f.rcv_nxt += 1;
    f.box_fin = true;
    if (!f.fin_acked) {
      (void)shutdown(f.fd.get(), SHUT_WR);  // else maybe_close() closes it now: close sends the FIN
    }
    send_ack(f);  // at once: the flow may be gone before the batch ends
  } else {
    ack_data(f);
  }
  uint64_t id = f.info.id;
  maybe_close(f);  // may destroy f
  return flows_.count(id) != 0;
}

void TcpTranslator::send_data(Flow& f, Clock::time_point now) {
  if (f.state != Flow::State::kEstablished || f.fin_sent) {
    return;
  }
  uint32_t limit = std::min(f.box_wnd, config_.max_inflight);
  while (f.readable && !(f.host_eof && f.snd_nxt == f.eof_seq)) {
    uint32_t inflight = f.data_inflight();
    if (inflight >= limit) {
      break;
    }
    size_t want = std::min<size_t>(limit - inflight, data_.size());
    ssize_t n;
    if (f.peek_off == Flow::PeekOff::kUntried && inflight > 0) {
      int off = static_cast<int>(inflight);
      f.peek_off = setsockopt(f.fd.get(), SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) == 0
                       ? Flow::PeekOff::kOn
                       : Flow::PeekOff::kOff;
    }
    // Untried means nothing is in flight: a plain peek starts at the right byte.
    if (f.peek_off != Flow::PeekOff::kOff) {
      n = recv(f.fd.get(), data_.data(), want, MSG_PEEK | MSG_DONTWAIT);
    } else {
      scratch_.resize(std::max<size_t>(inflight, 1));
      iovec iov[2] = {{scratch_.data(), inflight}, {data_.data(), want}};
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = 2;
      n = recvmsg(f.fd.get(), &msg, MSG_PEEK | MSG_DONTWAIT);
      if (n >= 0) {
        if (static_cast<size_t>(n) < inflight) {
          reset_flow(f, "socket lost unacknowledged data");
          return;
        }
        n -= static_cast<ssize_t>(inflight);
        if (n == 0 && !f.rdhup) {
          f.readable = false;
          break;  // nothing new yet (the queue holds only bytes already sent)
        }
      }
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        f.readable = f.rdhup;  // after EOF a peek must still see it (no further edge comes)
        break;
      }
      reset_flow(f, base::errno_name(errno));
      return;
    }
    if (n == 0) {
      f.host_eof = true;
      f.eof_seq = f.snd_nxt;
      break;
    }
    // The host's FIN already arrived (EPOLLRDHUP) and the peek took less than it asked for: these
    // are the last bytes, so the FIN rides on the last segment (one frame, one peek and one
    // wakeup of the box less per short connection). A retransmission that reaches the EOF again
    // carries it too.
    const uint32_t end = f.snd_nxt + static_cast<uint32_t>(n);
    const bool eof_after = f.host_eof ? end == f.eof_seq : f.rdhup && static_cast<size_t>(n) < want;
    for (size_t off = 0; off < static_cast<size_t>(n); off += f.mss) {
      size_t len = std::min<size_t>(f.mss, static_cast<size_t>(n) - off);
      bool last = off + len == static_cast<size_t>(n);
      uint8_t flags = tcpflag::kAck | (last ? tcpflag::kPsh : 0);
      if (last && eof_after) {
        flags |= tcpflag::kFin;
        f.host_eof = true;
        f.eof_seq = end;
        f.fin_sent = true;
      }
      send_segment(f, flags, f.snd_nxt, Bytes(data_).subspan(off, len), false);
      f.snd_nxt += static_cast<uint32_t>(len);
    }
    if (f.fin_sent) {
      f.snd_nxt += 1;  // the FIN's sequence number
      if (seq_lt(f.snd_max, f.snd_nxt)) {
        f.snd_max = f.snd_nxt;
      }
      if (!f.rto_at) {
        f.rto_at = now + f.rto;
      }
      return;
    }
    if (seq_lt(f.snd_max, f.snd_nxt)) {
      f.snd_max = f.snd_nxt;
    }
    if (!f.rto_at) {
      f.rto_at = now + f.rto;
    }
    if (static_cast<size_t>(n) < want) {
      f.readable = f.rdhup;
      break;  // drained for now
    }
  }
  if (f.host_eof && f.snd_nxt == f.eof_seq && !f.fin_sent) {
    send_segment(f, tcpflag::kFin | tcpflag::kAck, f.snd_nxt, {}, false);
    f.fin_sent = true;
    f.snd_nxt += 1;
    if (seq_lt(f.snd_max, f.snd_nxt)) {
      f.snd_max = f.snd_nxt;
    }
    if (!f.rto_at) {
      f.rto_at = now + f.rto;
    }
  }
  if (f.box_wnd == 0 && !f.host_eof && !f.persist_at) {
    f.persist_at = now + f.rto;
  }
}

void TcpTranslator::rewind(Flow& f) {
  f.snd_nxt = f.snd_una;
  f.readable = true;
  f.fin_sent = false;
  f.dup_acks = 0;
  if (f.peek_off == Flow::PeekOff::kOn) {
    int zero = 0;
    (void)setsockopt(f.fd.get(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero);
  }
}

uint16_t TcpTranslator::window_field(Flow& f) {
  uint32_t free_space = 0;
  if (f.box_fin) {
    free_space = 0xffff;  // nothing more will come; keep the box from probing
  } else if (!f.sock_full) {
    free_space = send_space(f);
  }
  uint32_t field = f.wscale_ok ? free_space >> kOurWscale : free_space;
  return static_cast<uint16_t>(std::min<uint32_t>(field, 0xffff));
}

uint32_t TcpTranslator::send_space(Flow& f) {
  if (f.space) {
    // Measured since the last write: the reply segment of a request/response exchange, and every
    // data segment of a download, need no SO_MEMINFO of their own (one syscall less on the path
    // from the host's answer to the box).
    return *f.space;
  }
  f.space = measure_space(f);
  return *f.space;
}

uint32_t TcpTranslator::measure_space(Flow& f) {
  // Offer only what the socket is sure to take. The kernel charges each buffer's true size
  // (payload plus skb overhead) against SO_SNDBUF, so a window of "SO_SNDBUF minus bytes queued"
  // promises more than fits: the box sends it, send() comes up short, the rest of the burst is
  // dropped and the box falls into retransmission timeouts (measured: uploads stalling for
  // seconds). SO_MEMINFO gives the live buffer size (autotuning grows it) and the memory
  // charged; TCP queues in wmem_queued, AF_UNIX in wmem_alloc, and the next send() is checked
  // against the larger. Offer as many MSS-sized segments as fit when each is charged
  // kSkbOverhead on top (within 3% for the usual 64 KiB segments).
  uint32_t free_mem = 0;
  uint32_t mem[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof mem;
  if (getsockopt(f.fd.get(), SOL_SOCKET, SO_MEMINFO, mem, &len) == 0 &&
      len >= sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1)) {
    uint32_t used = std::max(mem[SK_MEMINFO_WMEM_QUEUED], mem[SK_MEMINFO_WMEM_ALLOC]);
    uint32_t buf = mem[SK_MEMINFO_SNDBUF];
    f.sndbuf = static_cast<int>(std::min<uint32_t>(buf, INT32_MAX));
    free_mem = buf > used ? buf - used : 0;
    f.wnd_constrained = used > 0 && uint64_t{free_mem} + f.mss + kSkbOverhead <= buf;
  } else {
    socklen_t slen = sizeof f.sndbuf;
    if (getsockopt(f.fd.get(), SOL_SOCKET, SO_SNDBUF, &f.sndbuf, &slen) != 0) {
      f.sndbuf = 64 * 1024;
    }
    int outq = 0;
    if (ioctl(f.fd.get(), SIOCOUTQ, &outq) != 0) {
      outq = 0;
    }
    free_mem = f.sndbuf > outq ? static_cast<uint32_t>(f.sndbuf - outq) : 0;
  }
  uint64_t segments = free_mem / (uint64_t{f.mss} + kSkbOverhead);
  uint64_t wnd = segments * f.mss;
  if (segments == 0 && free_mem > 2 * kSkbOverhead) {
    // Not one full segment fits: a fresh TCP socket starts with a 16 KiB buffer, which
    // autotuning grows only once data flows, and the box's MSS is near 64 KiB. Offer what fits as
    // one smaller segment; a zero window here stalled uploads at ~1 MB/s (persist probes).
    wnd = free_mem - kSkbOverhead;
  }
  return static_cast<uint32_t>(std::min<uint64_t>(wnd, UINT32_MAX / 2));
}

void TcpTranslator::note_window(Flow& f, uint32_t wnd) {
  f.adv_wnd = wnd;
  // "Small" means the socket is mostly full, not that its buffer is small: an idle flow on a
  // small AF_UNIX buffer (the proxy's socketpair) must not wake the loop.
  uint32_t low = std::min<uint32_t>(kLowWindow, static_cast<uint32_t>(f.sndbuf) / 4);
  if (wnd >= low || f.box_fin || f.state != Flow::State::kEstablished) {
    f.wnd_check_at.reset();
    f.wnd_check_every = kWndCheckFirst;
  } else if (!f.wnd_check_at) {
    f.wnd_check_at = Clock::now() + f.wnd_check_every;
  }
}

void TcpTranslator::ack_data(Flow& f) {
  if (!batching_) {
    send_ack(f);
    return;
  }
  if (f.ack_pending) {
    ++counters_.acks_coalesced;
    return;
  }
  f.ack_pending = true;
  pending_acks_.push_back(f.info.id);
}

void TcpTranslator::end_batch() {
  batching_ = false;
  for (uint64_t id : pending_acks_) {
    auto it = flows_.find(id);
    if (it != flows_.end() && it->second->ack_pending) {
      send_ack(*it->second);  // may arm the window check
      sync_deadline(id);
    }
  }
  pending_acks_.clear();
  for (base::UniqueFd& fd : closing_) {
    poller_.unwatch(fd.get());
  }
  closing_.clear();  // closes them
}

void TcpTranslator::send_segment(Flow& f, uint8_t flags, uint32_t seq, Bytes payload,
                                 bool syn_options) {
  f.ack_pending = false;  // every segment carries the latest acknowledgement
  TcpOut t;
  t.src = f.key.dst;
  t.dst = config_.box_ip;
  t.sport = f.key.dst_port;
  t.dport = f.key.box_port;
  t.seq = seq;
  t.ack = f.rcv_nxt;
  t.flags = flags;
  if (syn_options) {
    // The SYN-ACK window is never scaled; advertise what fits in 16 bits.
    t.window = 0xffff;
    t.mss = static_cast<uint16_t>(std::min<uint32_t>(config_.mtu - 40, 65495));
    if (f.wscale_ok) {
      t.wscale = kOurWscale;
    }
  } else {
    t.window = window_field(f);
    note_window(f, uint32_t{t.window} << (f.wscale_ok ? kOurWscale : 0));
  }
  build_tcp(frame_, L2{.src = config_.gateway_mac, .dst = f.box_mac}, t, payload,
            config_.tx_checksum);
  ++counters_.segments_out;
  sink_.send_frame(frame_);
}

void TcpTranslator::on_socket(uint64_t token, uint32_t events, Clock::time_point now) {
  auto it = flows_.find(token);
  if (it == flows_.end()) {
    return;
  }
  SyncOnExit sync{*this, token};
  Flow& f = *it->second;
  if (f.state == Flow::State::kConnecting) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) {
      return;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(f.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
      err = errno;
    }
    if (err != 0) {
      ++counters_.flows_failed;
      audit_.emit(audit::Event("net.fail")
                      .num("id", static_cast<int64_t>(f.info.id))
                      .str("name", f.info.name)
                      .num("port", f.info.orig_port)
                      .str("error", base::Error::sys(err, "connect").message()));
      reset_flow(f, base::errno_name(err));
      return;
    }
    f.state = Flow::State::kSynRcvd;
    // The connect's edge may carry the host's first bytes (a banner) or its FIN too: no other
    // edge comes for them.
    if ((events & (EPOLLRDHUP | EPOLLHUP)) != 0) {
      f.rdhup = true;
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) {
      f.readable = true;
    }
    send_segment(f, tcpflag::kSyn | tcpflag::kAck, f.iss, {}, true);
    f.rto_at = now + f.rto;
    return;
  }
  if ((events & EPOLLERR) != 0) {
    int err = 0;
    socklen_t len = sizeof err;
    (void)getsockopt(f.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      reset_flow(f, base::errno_name(err));
      return;
    }
  }
  if ((events & (EPOLLRDHUP | EPOLLHUP)) != 0) {
    f.rdhup = true;
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) {
    f.readable = true;
  }
  if ((events & EPOLLOUT) != 0 && f.state == Flow::State::kEstablished && !f.box_fin) {
    // The socket drained (an edge: the peer read). When the window we last offered held fewer
    // than four segments, the box's ACK clock is too weak to reopen it by itself: tell it as soon
    // as the window grew by a segment. Waiting for its persist timer or our window check cost
    // ~200 ms per window with near-64 KiB segments (measured: uploads at ~1 MB/s).
    const bool was_full = f.sock_full;
    f.sock_full = false;
    if (was_full || f.wnd_constrained) {
      // The drain gave back space we offered less for: measure it. (EPOLLOUT comes with every
      // edge of a writable socket, so an unconditional reset would measure on each reply.)
      f.space.reset();
    }
    if (was_full) {
      send_ack(f);  // window update
    } else if (f.wnd_constrained && f.adv_wnd < 4 * f.mss) {
      uint32_t wnd = uint32_t{window_field(f)} << (f.wscale_ok ? kOurWscale : 0);
      if (wnd >= f.adv_wnd + f.mss) {
        send_ack(f);  // window update
      }
    }
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) {
    send_data(f, now);
  }
}

void TcpTranslator::on_timer(Clock::time_point now) {
  for (uint64_t id : deadlines_.due(now)) {
    auto it = flows_.find(id);
    if (it == flows_.end()) {
      continue;
    }
    SyncOnExit sync{*this, id};
    Flow& f = *it->second;
    if (f.wnd_check_at && *f.wnd_check_at <= now) {
      f.wnd_check_at.reset();
      f.space.reset();
      uint32_t wnd = uint32_t{window_field(f)} << (f.wscale_ok ? kOurWscale : 0);
      uint32_t low = std::min<uint32_t>(kLowWindow, static_cast<uint32_t>(f.sndbuf) / 4);
      if (wnd >= low || wnd >= 2 * f.adv_wnd + f.mss) {
        f.wnd_check_every = kWndCheckFirst;
        send_ack(f);  // the window reopened: tell the box now
      } else {
        // Still small: the peer is slow. Back off so an idle slow flow costs next to nothing.
        f.wnd_check_every = std::min(f.wnd_check_every * 2, kWndCheckMax);
        f.wnd_check_at = now + f.wnd_check_every;
      }
    }
    if (f.persist_at && *f.persist_at <= now) {
      // Zero-window probe: an ACK one below snd_nxt makes the box answer with its window.
      send_segment(f, tcpflag::kAck, f.snd_nxt - 1, {}, false);
      f.persist_at = now + std::min(f.rto * 2, config_.rto_max);
    }
    if (f.rto_at && *f.rto_at <= now) {
      if (++f.retries > config_.max_retries) {
        reset_flow(f, "retransmission limit");
        continue;
      }
      ++counters_.retransmits;
      f.rto = std::min(f.rto * 2, config_.rto_max);
      f.rto_at = now + f.rto;
      if (f.state == Flow::State::kSynRcvd) {
        send_segment(f, tcpflag::kSyn | tcpflag::kAck, f.iss, {}, true);
      } else if (f.state == Flow::State::kEstablished) {
        rewind(f);
        send_data(f, now);
      }
    }
  }
}

void TcpTranslator::reset_flow(Flow& f, std::string_view why) {
  base::log::debug("tcp #{} {}:{} reset: {}", f.info.id, f.info.name, f.info.orig_port, why);
  send_segment(f, tcpflag::kRst | tcpflag::kAck, f.snd_nxt, {}, false);
  ++counters_.resets_sent;
  linger lg{1, 0};
  (void)setsockopt(f.fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  finish(f.info.id, true);
}

size_t TcpTranslator::reset_matching(const std::function<bool(const FlowInfo&)>& match,
                                     std::string_view why) {
  std::vector<uint64_t> ids;
  for (const auto& [id, f] : flows_) {
    if (match(f->info)) {
      ids.push_back(id);
    }
  }
  for (uint64_t id : ids) {
    if (auto it = flows_.find(id); it != flows_.end()) {
      reset_flow(*it->second, why);
    }
  }
  return ids.size();
}

void TcpTranslator::maybe_close(Flow& f) {
  if (f.box_fin && f.fin_acked) {
    finish(f.info.id, false);
  }
}

void TcpTranslator::finish(uint64_t id, bool reset) {
  auto it = flows_.find(id);
  if (it == flows_.end()) {
    return;
  }
  std::unique_ptr<Flow> f = std::move(it->second);
  flows_.erase(it);
  by_key_.erase(f->key);
  budget_.release(id);
  deadlines_.set(id, std::nullopt);
  if (batching_) {
    // Within a tap batch the socket is unwatched and closed at end_batch(): a host close runs
    // the whole FIN exchange with the peer inside close(2), and the box's next SYN, often in the
    // same batch, is answered first (its flow id is new, so a late event for this socket finds
    // no flow and is ignored; the fd number stays taken until then).
    closing_.push_back(std::move(f->fd));
  } else {
    poller_.unwatch(f->fd.get());
    f->fd.reset();
  }
  f->stats.reset = reset;
  ++counters_.flows_closed;
  audit_.emit(close_event(id, *f, reset));
  handler_.on_close(f->info, f->stats);
}

audit::Event TcpTranslator::close_event(uint64_t id, const Flow& f, bool reset) {
  audit::Event e("net.close");
  e.num("id", static_cast<int64_t>(id))
      .str("name", f.info.name)
      .num("port", f.info.orig_port)
      .num("bytes_up", static_cast<int64_t>(f.stats.bytes_up))
      .num("bytes_down", static_cast<int64_t>(f.stats.bytes_down))
      .boolean("reset", reset);
  if (f.handed_back) {
    e.boolean("handed_back", true);
  }
  return e;
}

}  // namespace agentbox::net
