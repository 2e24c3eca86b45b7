// TCP translator through the whole stack: box frames in, real host sockets (socketpairs and
// loopback TCP) on the other side, an in-memory tap capturing frames to the box.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <random>

#include "agentbox/net/epoll_poller.hpp"
#include "agentbox/net/stack.hpp"

namespace agentbox::net {
namespace {

using namespace std::chrono_literals;

const Ip4 kTcpBox = ip4(10, 0, 2, 100);
const Mac kTcpBoxMac = {0x02, 0, 0, 0, 0, 0x01};

struct CaptureSink : FrameSink {
  std::vector<std::vector<std::byte>> frames;
  void send_frame(Bytes f) override { frames.emplace_back(f.begin(), f.end()); }
};

struct Seg {
  uint8_t flags = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint16_t window = 0;
  std::optional<uint16_t> mss;
  std::optional<uint8_t> wscale;
  std::string data;
  bool has(uint8_t f) const { return (flags & f) != 0; }
};

// Accept first: one end of a socketpair to the translator, the other kept as the "host peer".
struct PairHandler : FlowHandler {
  std::map<uint64_t, base::UniqueFd> peers;
  std::vector<FlowInfo> opened;
  int closed = 0;
  base::Result<OpenResult> on_open(const FlowInfo& info) override {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
      return base::Error::sys(errno, "socketpair");
    }
    peers[info.id] = base::UniqueFd(sv[1]);
    opened.push_back(info);
    return OpenResult{.fd = base::UniqueFd(sv[0]), .connected = true};
  }
  void on_close(const FlowInfo&, const FlowStats&) override { ++closed; }
};

// Connect first: a non-blocking connect to a loopback port.
struct LoopbackHandler : FlowHandler {
  uint16_t port = 0;
  base::Result<OpenResult> on_open(const FlowInfo&) override {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    base::UniqueFd owned(fd);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
      return base::Error::sys(errno, "connect");
    }
    return OpenResult{.fd = std::move(owned), .connected = false};
  }
};

// PairHandler that keeps the translator's FlowControl (the proxy's hand-back).
struct HandBackHandler : PairHandler {
  FlowControl* control = nullptr;
  void attach(FlowControl* c) override { control = c; }
};

// A socket bound to 127.0.0.1 on a free port (`sa` its address), listening with `backlog`
// unless that is 0; an invalid fd (and a test failure) when that fails.
base::UniqueFd loopback_listener(int backlog, sockaddr_in& sa) {
  base::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sa = sockaddr_in{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  const bool ok = bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
                  (backlog == 0 || listen(fd.get(), backlog) == 0) &&
                  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0;
  EXPECT_TRUE(ok) << "loopback listener: " << strerror(errno);
  return ok ? std::move(fd) : base::UniqueFd();
}

// A connected loopback TCP pair: {client (non-blocking, the upstream), accepted server}.
std::pair<base::UniqueFd, base::UniqueFd> loopback_pair() {
  sockaddr_in sa{};
  base::UniqueFd listener = loopback_listener(1, sa);
  base::UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  EXPECT_EQ(fcntl(client.get(), F_SETFL, O_NONBLOCK), 0);
  base::UniqueFd server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  return {std::move(client), std::move(server)};
}

class TcpTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    auto p = EpollPoller::create();
    ASSERT_TRUE(p);
    poller_.emplace(std::move(*p));
    policy_ = *policy::EgressPolicy::parse({"example.com", "*.example.org:*"});
    StackConfig cfg;
    cfg.tcp.use_peek_off = GetParam();
    stack_.emplace(cfg, policy_, *handler_, *poller_, tap_, audit_);
    dst_ = *stack_->pool().assign("example.com");
  }

  // The stack keeps a reference to `h` and its translator detaches from it on the way out, so
  // the returned guard, declared after the handler, drops the stack before the handler goes.
  struct DropStack {
    std::optional<Stack>& stack;
    ~DropStack() { stack.reset(); }
  };
  [[nodiscard]] DropStack use(FlowHandler& h) {
    StackConfig cfg;
    cfg.tcp.use_peek_off = GetParam();
    stack_.reset();
    stack_.emplace(cfg, policy_, h, *poller_, tap_, audit_);
    dst_ = *stack_->pool().assign("example.com");
    return DropStack{stack_};
  }

  void box_send(uint8_t flags, uint32_t seq, uint32_t ack, std::string_view data = {},
                uint16_t window = 0xffff, uint16_t dport = 443, bool syn_opts = false) {
    TcpOut t;
    t.src = kTcpBox;
    t.dst = dst_;
    t.sport = sport_;
    t.dport = dport;
    t.seq = seq;
    t.ack = ack;
    t.flags = flags;
    t.window = window;
    if (syn_opts) {
      t.mss = mss_;
      t.wscale = 0;  // window scale offered, factor 1: windows stay exact in tests
    }
    std::vector<std::byte> f;
    build_tcp(f, L2{.src = kTcpBoxMac, .dst = {}}, t,
              Bytes(reinterpret_cast<const std::byte*>(data.data()), data.size()));
    stack_->on_frame(f, now_);
  }

  // Runs socket events until nothing happens for a moment (bounded).
  void pump(int rounds = 50) {
    for (int i = 0; i < rounds; ++i) {
      auto evs = poller_->wait(i == 0 ? 20 : 5);
      if (evs.empty() && i > 0) {
        return;
      }
      for (auto [token, events] : evs) {
        stack_->tcp().on_socket(token, events, now_);
      }
    }
  }

  std::vector<Seg> take() {
    std::vector<Seg> out;
    for (auto& f : tap_.frames) {
      auto e = parse_ethernet(f);
      EXPECT_TRUE(e);
      auto ip = parse_ipv4(e->payload);
      EXPECT_TRUE(ip);
      EXPECT_EQ(ip->dst, kTcpBox);
      auto t = parse_tcp(ip->payload, ip->src, ip->dst);
      EXPECT_TRUE(t);
      if (!t) {
        continue;
      }
      out.push_back(
          Seg{t->flags, t->seq, t->ack, t->window, t->options.mss, t->options.wscale,
              std::string(reinterpret_cast<const char*>(t->payload.data()), t->payload.size())});
    }
    tap_.frames.clear();
    return out;
  }

  // SYN -> SYN-ACK -> ACK. Returns the server's ISS+1 (first data seq from the host).
  uint32_t handshake() {
    box_send(tcpflag::kSyn, 1000, 0, {}, 0xffff, 443, true);
    pump();
    auto segs = take();
    EXPECT_EQ(segs.size(), 1u);
    if (segs.empty()) {
      return 0;
    }
    EXPECT_EQ(segs[0].flags, tcpflag::kSyn | tcpflag::kAck);
    EXPECT_EQ(segs[0].ack, 1001u);
    box_send(tcpflag::kAck, 1001, segs[0].seq + 1);
    return segs[0].seq + 1;
  }

  static std::string read_all(int fd) {
    std::string out;
    char buf[65536];
    while (true) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  PairHandler pair_;
  FlowHandler* handler_ = &pair_;
  std::optional<EpollPoller> poller_;
  policy::EgressPolicy policy_;
  CaptureSink tap_;
  audit::MemorySink audit_;
  std::optional<Stack> stack_;
  Ip4 dst_ = 0;
  uint16_t sport_ = 40000;
  uint16_t mss_ = 1460;
  Clock::time_point now_ = Clock::now();
};

TEST_P(TcpTest, DeniedSynGetsRstAndAudit) {
  box_send(tcpflag::kSyn, 5, 0, {}, 0xffff, 22);  // example.com allows 443/80 only
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].flags, tcpflag::kRst | tcpflag::kAck);
  EXPECT_EQ(segs[0].ack, 6u);
  EXPECT_TRUE(pair_.opened.empty());
  EXPECT_NE(audit_.lines().find(R"("type":"net.deny","proto":"tcp","name":"example.com")"),
            std::string::npos)
      << audit_.lines();
  dst_ = ip4(127, 0, 0, 1);  // a literal, no CIDR rule
  box_send(tcpflag::kSyn, 5, 0);
  EXPECT_EQ(take().at(0).flags, tcpflag::kRst | tcpflag::kAck);
  dst_ = ip4(198, 18, 7, 7);  // synthetic, never handed out
  box_send(tcpflag::kSyn, 5, 0);
  EXPECT_EQ(take().at(0).flags, tcpflag::kRst | tcpflag::kAck);
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
}

TEST_P(TcpTest, HandshakeGivesHandlerTheFlowInfo) {
  uint32_t iss1 = handshake();
  EXPECT_NE(iss1, 0u);
  ASSERT_EQ(pair_.opened.size(), 1u);
  const auto& fi = pair_.opened[0];
  EXPECT_EQ(fi.name, "example.com");
  EXPECT_EQ(fi.orig_port, 443);
  EXPECT_EQ(fi.synthetic_dst, dst_);
  EXPECT_EQ(fi.box_src, (Endpoint{kTcpBox, 40000}));
  EXPECT_EQ(fi.rule, "example.com");
  EXPECT_FALSE(fi.literal);
  EXPECT_EQ(stack_->tcp().flow_count(), 1u);
}

// A flow still open when the session ends (the translator goes) gets its net.close line: every
// net.connect has one (issue 14).
TEST_P(TcpTest, FlowsOpenAtTheEndGetCloseLines) {
  handshake();
  ASSERT_EQ(stack_->tcp().flow_count(), 1u);
  EXPECT_EQ(audit_.lines().find("net.close"), std::string::npos);
  stack_.reset();
  EXPECT_NE(audit_.lines().find(R"("type":"net.close","id":1,"name":"example.com","port":443,)"),
            std::string::npos)
      << audit_.lines();
  EXPECT_NE(audit_.lines().find(R"("reason":"session end")"), std::string::npos);
}

TEST_P(TcpTest, DataBothWaysAndAckDiscards) {
  uint32_t hs = handshake();
  box_send(tcpflag::kAck | tcpflag::kPsh, 1001, hs, "hello");
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].ack, 1006u);
  int peer = pair_.peers.begin()->second.get();
  EXPECT_EQ(read_all(peer), "hello");
  ASSERT_EQ(write(peer, "world", 5), 5);
  pump();
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "world");
  EXPECT_EQ(segs[0].seq, hs);
  box_send(tcpflag::kAck, 1006, hs + 5);
  ASSERT_EQ(write(peer, "again", 5), 5);
  pump();
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "again");  // "world" was discarded on ACK, not re-sent
  EXPECT_EQ(segs[0].seq, hs + 5);
}

TEST_P(TcpTest, LargeDataIsCutIntoMssSegmentsWithinTheWindow) {
  mss_ = 1000;
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  std::string blob(5000, 'x');
  ASSERT_EQ(write(peer, blob.data(), blob.size()), 5000);
  box_send(tcpflag::kAck, 1001, hs, {}, 2500);  // window 2500
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].data.size(), 1000u);
  EXPECT_EQ(segs[2].data.size(), 500u);
  box_send(tcpflag::kAck, 1001, hs + 2500, {}, 10000);
  segs = take();
  size_t total = 0;
  for (auto& s : segs) {
    total += s.data.size();
  }
  EXPECT_EQ(total, 2500u);
}

TEST_P(TcpTest, OutOfOrderAndDuplicatesAreNotWrittenTwice) {
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  box_send(tcpflag::kAck, 1006, hs, "world");  // ahead of rcv_nxt
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].ack, 1001u);  // duplicate ACK
  EXPECT_EQ(read_all(peer), "");
  box_send(tcpflag::kAck, 1001, hs, "hello");
  box_send(tcpflag::kAck, 1001, hs, "hello");   // duplicate
  box_send(tcpflag::kAck, 1003, hs, "llowor");  // overlap: only "wor" is new
  box_send(tcpflag::kAck, 1009, hs, "ld");
  EXPECT_EQ(read_all(peer), "helloworld");
  EXPECT_EQ(take().back().ack, 1011u);
  EXPECT_EQ(stack_->tcp().counters().out_of_order, 1u);
}

TEST_P(TcpTest, RetransmitOnTimeoutAndOnThirdDuplicateAck) {
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  ASSERT_EQ(write(peer, "abcdef", 6), 6);
  pump();
  ASSERT_EQ(take().at(0).data, "abcdef");
  box_send(tcpflag::kAck, 1001, hs + 3);  // acks "abc"
  EXPECT_TRUE(take().empty());
  now_ += 5s;
  stack_->tcp().on_timer(now_);
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, hs + 3);
  EXPECT_EQ(segs[0].data, "def");
  // Three duplicate ACKs rewind too.
  ASSERT_EQ(write(peer, "gh", 2), 2);
  pump();
  ASSERT_EQ(take().at(0).data, "gh");
  for (int i = 0; i < 3; ++i) {
    box_send(tcpflag::kAck, 1001, hs + 3);
  }
  segs = take();
  ASSERT_FALSE(segs.empty());
  EXPECT_EQ(segs[0].seq, hs + 3);
  EXPECT_EQ(segs[0].data, "defgh");
  EXPECT_GE(stack_->tcp().counters().retransmits, 2u);
}

// next_deadline() is the earliest timer of all flows (a DeadlineQueue, not a scan): it follows
// the one flow with data in flight among many idle ones, moves on when that flow is acknowledged,
// and on_timer retransmits for the flow that is due and no other.
TEST_P(TcpTest, NextDeadlineFollowsTheDueFlowAmongIdleOnes) {
  std::vector<uint32_t> hs;
  for (int i = 0; i < 40; ++i) {
    sport_ = static_cast<uint16_t>(41000 + i);
    hs.push_back(handshake());
  }
  ASSERT_EQ(stack_->tcp().flow_count(), 40u);
  EXPECT_FALSE(stack_->tcp().next_deadline().has_value()) << "idle flows arm no timer";
  // Flow ids are 1..40 in order; flow 31 (sport 41030) gets host data first, flow 8 later.
  int peer31 = pair_.peers.at(31).get();
  int peer8 = pair_.peers.at(8).get();
  ASSERT_EQ(write(peer31, "abc", 3), 3);
  pump();
  ASSERT_EQ(take().size(), 1u);
  auto first = stack_->tcp().next_deadline();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, now_ + 1s) << "the retransmission timer of flow 31";
  now_ += 100ms;
  ASSERT_EQ(write(peer8, "de", 2), 2);
  pump();
  ASSERT_EQ(take().size(), 1u);
  EXPECT_EQ(stack_->tcp().next_deadline(), first) << "flow 8's timer is later";
  sport_ = 41030;
  box_send(tcpflag::kAck, 1001, hs[30] + 3);  // flow 31 acknowledged: its timer goes
  EXPECT_EQ(stack_->tcp().next_deadline(), now_ + 1s) << "now flow 8's";
  now_ += 1s;
  stack_->tcp().on_timer(now_);
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u) << "only the due flow retransmits";
  EXPECT_EQ(segs[0].data, "de");
  EXPECT_EQ(segs[0].seq, hs[7]);
  EXPECT_EQ(stack_->tcp().next_deadline(), now_ + 2s) << "backed off";
  sport_ = 41007;
  box_send(tcpflag::kAck, 1001, hs[7] + 2);
  EXPECT_FALSE(stack_->tcp().next_deadline().has_value());
}

TEST_P(TcpTest, ZeroWindowIsProbedAndReopened) {
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  box_send(tcpflag::kAck, 1001, hs, {}, 0);
  ASSERT_EQ(write(peer, "data", 4), 4);
  pump();
  EXPECT_TRUE(take().empty());
  now_ += 2s;
  stack_->tcp().on_timer(now_);
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);  // probe: bare ACK below snd_nxt
  EXPECT_TRUE(segs[0].data.empty());
  EXPECT_EQ(segs[0].seq, hs - 1);
  box_send(tcpflag::kAck, 1001, hs, {}, 100);
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "data");
}

// The window offered is what the socket takes: a box that fills every window it is offered,
// into a host peer that does not read, never meets a short write (which would drop the rest of
// its burst); the window closes instead. When the peer drains, the translator reopens the window
// by itself (no segment from the box, no EPOLLOUT edge: only a timer notices).
TEST_P(TcpTest, WindowIsWhatTheSocketTakesAndReopensByItself) {
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  uint32_t seq = 1001;
  box_send(tcpflag::kAck | tcpflag::kPsh, seq, hs, "x");
  seq += 1;
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  auto bytes = [](const Seg& s) { return uint32_t{s.window} << 7; };  // we scale by 7
  uint32_t wnd = bytes(segs[0]);
  ASSERT_GE(wnd, 10u * mss_);
  std::string chunk(mss_, 'w');
  for (int round = 0; round < 1000 && wnd >= mss_; ++round) {
    for (uint32_t sent = 0; sent + mss_ <= wnd; sent += mss_) {
      box_send(tcpflag::kAck, seq, hs, chunk);
      seq += mss_;
    }
    segs = take();
    ASSERT_FALSE(segs.empty());
    ASSERT_EQ(segs.back().ack, seq) << "the socket took less than the window offered";
    wnd = bytes(segs.back());
  }
  EXPECT_LT(wnd, uint32_t{mss_});
  EXPECT_EQ(stack_->tcp().counters().short_writes, 0u);
  EXPECT_EQ(read_all(peer).size(), seq - 1001);
  segs.clear();
  for (int i = 0; i < 50 && segs.empty(); ++i) {
    now_ += 100ms;
    stack_->tcp().on_timer(now_);
    segs = take();
  }
  ASSERT_EQ(segs.size(), 1u) << "no window update after the peer drained";
  EXPECT_EQ(segs[0].ack, seq);
  EXPECT_GE(bytes(segs[0]), 10u * mss_);
  EXPECT_FALSE(stack_->tcp().next_deadline().has_value()) << "the check stops once reopened";
}

// Large segments leave few in flight, so the box cannot count on ACKs to learn that the window
// reopened: the drain itself (EPOLLOUT) must bring the update, with no timer (uploads stalled at
// ~1 MB/s on the box's 200 ms persist timer before).
TEST_P(TcpTest, ADrainedSocketReopensTheWindowAtOnce) {
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  uint32_t seq = 1001;
  box_send(tcpflag::kAck | tcpflag::kPsh, seq, hs, "x");
  seq += 1;
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  auto bytes = [](const Seg& s) { return uint32_t{s.window} << 7; };
  uint32_t wnd = bytes(segs[0]);
  std::string chunk(mss_, 'w');
  for (int round = 0; round < 1000 && wnd >= 3 * mss_; ++round) {
    for (uint32_t sent = 0; sent + mss_ <= wnd && sent < 8 * mss_; sent += mss_) {
      box_send(tcpflag::kAck, seq, hs, chunk);
      seq += mss_;
    }
    segs = take();
    ASSERT_FALSE(segs.empty());
    wnd = bytes(segs.back());
  }
  ASSERT_LT(wnd, 4u * mss_) << "the socket never filled";
  EXPECT_EQ(read_all(peer).size(), seq - 1001);
  pump();  // the drain shows as EPOLLOUT; the clock does not move
  segs = take();
  ASSERT_FALSE(segs.empty()) << "no window update on the drain";
  EXPECT_EQ(segs.back().ack, seq);
  EXPECT_GE(bytes(segs.back()), wnd + mss_);
}

TEST_P(TcpTest, HalfCloseBothWaysThenTheFlowIsGone) {
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  box_send(tcpflag::kAck | tcpflag::kFin, 1001, hs, "bye");
  EXPECT_EQ(take().at(0).ack, 1005u);  // 3 bytes + FIN
  char buf[8];
  EXPECT_EQ(read(peer, buf, sizeof buf), 3);
  EXPECT_EQ(read(peer, buf, sizeof buf), 0);  // EOF: box shut its side
  ASSERT_EQ(write(peer, "late", 4), 4);       // the other direction still works
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "late");
  pair_.peers.clear();  // host side closes
  pump();
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_TRUE(segs[0].has(tcpflag::kFin));
  EXPECT_EQ(segs[0].seq, hs + 4);
  EXPECT_EQ(stack_->tcp().flow_count(), 1u);
  box_send(tcpflag::kAck, 1005, hs + 5);
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_EQ(pair_.closed, 1);
  EXPECT_NE(audit_.lines().find(R"("bytes_up":3,"bytes_down":4,"reset":false)"), std::string::npos)
      << audit_.lines();
}

TEST_P(TcpTest, HostClosesFirst) {
  uint32_t hs = handshake();
  pair_.peers.clear();
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_TRUE(segs[0].has(tcpflag::kFin));
  box_send(tcpflag::kAck, 1001, hs + 1);
  EXPECT_EQ(stack_->tcp().flow_count(), 1u);
  box_send(tcpflag::kAck | tcpflag::kFin, 1001, hs + 1);
  EXPECT_EQ(take().at(0).ack, 1002u);
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
}

// A host that answers and closes at once (HTTP/1.0, the bench's server): the FIN rides on the
// segment with the last bytes, and a retransmission carries both again.
TEST_P(TcpTest, FinRidesOnTheLastDataSegment) {
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  ASSERT_EQ(write(peer, "reply", 5), 5);
  ASSERT_EQ(shutdown(peer, SHUT_WR), 0);
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "reply");
  EXPECT_EQ(segs[0].flags, tcpflag::kAck | tcpflag::kPsh | tcpflag::kFin);
  EXPECT_EQ(segs[0].seq, hs);
  box_send(tcpflag::kAck, 1001, hs + 2);  // acks "re" only
  EXPECT_TRUE(take().empty());
  now_ += 5s;
  stack_->tcp().on_timer(now_);
  segs = take();
  ASSERT_EQ(segs.size(), 1u);  // "ply" + FIN again, in one segment
  EXPECT_EQ(segs[0].data, "ply");
  EXPECT_EQ(segs[0].seq, hs + 2);
  EXPECT_TRUE(segs[0].has(tcpflag::kFin));
  box_send(tcpflag::kAck, 1001, hs + 6);  // data and FIN acknowledged
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(stack_->tcp().flow_count(), 1u);
  box_send(tcpflag::kAck | tcpflag::kFin, 1001, hs + 6);
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].ack, 1002u);
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_NE(audit_.lines().find(R"("bytes_up":0,"bytes_down":5,"reset":false)"), std::string::npos)
      << audit_.lines();
}

// Data beyond the box's window: the FIN waits for the last segment, which only goes once the
// window opens.
TEST_P(TcpTest, FinWaitsForTheWindowWithTheLastData) {
  mss_ = 1000;
  uint32_t hs = handshake();
  int peer = pair_.peers.begin()->second.get();
  std::string blob(3000, 'z');
  ASSERT_EQ(write(peer, blob.data(), blob.size()), 3000);
  ASSERT_EQ(shutdown(peer, SHUT_WR), 0);
  box_send(tcpflag::kAck, 1001, hs, {}, 2000);
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_FALSE(segs[0].has(tcpflag::kFin));
  EXPECT_FALSE(segs[1].has(tcpflag::kFin));
  box_send(tcpflag::kAck, 1001, hs + 2000, {}, 2000);
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data.size(), 1000u);
  EXPECT_TRUE(segs[0].has(tcpflag::kFin));
}

// A host that speaks first (SSH, SMTP banners): bytes queued before the socket joins epoll, and
// bytes arriving before the box's handshake ACK, both reach the box right after the handshake.
TEST_P(TcpTest, HostBytesBeforeTheHandshakeEndsAreSentAfterIt) {
  struct BannerHandler : PairHandler {
    base::Result<OpenResult> on_open(const FlowInfo& info) override {
      auto r = PairHandler::on_open(info);
      if (r && write(peers[info.id].get(), "banner", 6) != 6) {
        return base::Error::msg("write banner");
      }
      return r;
    }
  } banner;
  const auto drop_banner = use(banner);
  box_send(tcpflag::kSyn, 1000, 0, {}, 0xffff, 443, true);
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  uint32_t hs = segs[0].seq + 1;
  box_send(tcpflag::kAck, 1001, hs);
  pump();
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "banner");

  sport_ = 40001;
  const auto drop_pair_ = use(pair_);
  box_send(tcpflag::kSyn, 1000, 0, {}, 0xffff, 443, true);
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  hs = segs[0].seq + 1;
  ASSERT_EQ(write(pair_.peers.begin()->second.get(), "early", 5), 5);
  pump();  // the edge arrives while the handshake is still open
  EXPECT_TRUE(take().empty());
  box_send(tcpflag::kAck, 1001, hs);
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "early");
}

// One tap batch: in-order segments of a flow get one ACK at the end (the latest sequence), per
// flow; an out-of-order segment's duplicate ACK and a FIN's ACK still go at once.
TEST_P(TcpTest, AcksOfOneBatchAreCoalescedPerFlow) {
  uint32_t hs1 = handshake();
  int peer1 = pair_.peers.begin()->second.get();
  sport_ = 40001;
  uint32_t hs2 = handshake();
  int peer2 = pair_.peers.rbegin()->second.get();
  auto& tcp = stack_->tcp();
  tcp.begin_batch();
  sport_ = 40000;
  box_send(tcpflag::kAck, 1001, hs1, "aaa");
  box_send(tcpflag::kAck, 1004, hs1, "bbb");
  sport_ = 40001;
  box_send(tcpflag::kAck, 1001, hs2, "cc");
  sport_ = 40000;
  box_send(tcpflag::kAck, 1007, hs1, "ddd");
  EXPECT_TRUE(take().empty()) << "ACKs wait for the end of the batch";
  tcp.end_batch();
  auto segs = take();
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_EQ(segs[0].ack, 1010u);  // flow 1: all of aaa, bbb, ddd
  EXPECT_EQ(segs[1].ack, 1003u);  // flow 2: cc
  EXPECT_EQ(read_all(peer1), "aaabbbddd");
  EXPECT_EQ(read_all(peer2), "cc");
  EXPECT_EQ(tcp.counters().acks_coalesced, 2u);

  tcp.begin_batch();
  box_send(tcpflag::kAck, 1020, hs1, "gap");  // out of order: duplicate ACK now
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].ack, 1010u);
  box_send(tcpflag::kAck, 1010, hs1, "e");
  ASSERT_EQ(write(peer1, "reply", 5), 5);
  pump();  // data to the box carries the held-back ACK
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "reply");
  EXPECT_EQ(segs[0].ack, 1011u);
  box_send(tcpflag::kAck | tcpflag::kFin, 1011, hs1 + 5, "f");  // FIN: ACK at once
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].ack, 1013u);
  tcp.end_batch();
  EXPECT_TRUE(take().empty()) << "nothing left to acknowledge";
  // Outside a batch every ACK goes at once, as before.
  sport_ = 40001;
  box_send(tcpflag::kAck, 1003, hs2, "x");
  box_send(tcpflag::kAck, 1004, hs2, "y");
  EXPECT_EQ(take().size(), 2u);
}

TEST_P(TcpTest, BoxRstClosesTheSocket) {
  handshake();
  int peer = pair_.peers.begin()->second.get();
  box_send(tcpflag::kRst, 1001 + 10000000, 0);  // out of window: ignored
  EXPECT_EQ(stack_->tcp().flow_count(), 1u);
  box_send(tcpflag::kRst, 1001, 0);
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  char c;
  EXPECT_EQ(read(peer, &c, 1), 0);
  EXPECT_NE(audit_.lines().find(R"("reset":true)"), std::string::npos);
}

TEST_P(TcpTest, HostResetIsRstToBox) {
  uint32_t hs = handshake();
  box_send(tcpflag::kAck, 1001, hs, "unread");
  take();
  pair_.peers.clear();  // closing with unread data: ECONNRESET on our end
  pump();
  auto segs = take();
  ASSERT_FALSE(segs.empty());
  EXPECT_TRUE(segs.back().has(tcpflag::kRst));
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
}

TEST_P(TcpTest, KeepAliveProbeIsAnswered) {
  uint32_t hs = handshake();
  box_send(tcpflag::kAck, 1000, hs);  // seq = rcv_nxt - 1, no data
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].ack, 1001u);
  EXPECT_EQ(stack_->tcp().flow_count(), 1u);
}

TEST_P(TcpTest, UnknownFlowSegmentsGetRst) {
  box_send(tcpflag::kAck, 1, 77, "x");
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].flags, tcpflag::kRst);
  EXPECT_EQ(segs[0].seq, 77u);
  box_send(tcpflag::kRst, 1, 0);
  EXPECT_TRUE(take().empty());  // never answer a RST
}

TEST_P(TcpTest, TruncatedFramesNeverReachTheTranslator) {
  uint32_t hs = handshake();
  TcpOut t;
  t.src = kTcpBox;
  t.dst = dst_;
  t.sport = sport_;
  t.dport = 443;
  t.seq = 1001;
  t.ack = hs;
  t.flags = tcpflag::kAck;
  t.window = 0xffff;
  std::vector<std::byte> f;
  std::string payload = "payload";
  build_tcp(f, L2{.src = kTcpBoxMac, .dst = {}}, t,
            Bytes(reinterpret_cast<const std::byte*>(payload.data()), payload.size()));
  for (size_t n = 0; n < f.size(); ++n) {
    stack_->on_frame(Bytes(f.data(), n), now_);
  }
  EXPECT_EQ(stack_->counters().malformed, f.size());
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(read_all(pair_.peers.begin()->second.get()), "");
}

TEST_P(TcpTest, LoopbackConnectFirstWithChecksummedBulkBothWays) {
  sockaddr_in sa{};
  base::UniqueFd listener = loopback_listener(8, sa);
  ASSERT_TRUE(listener);
  LoopbackHandler lh;
  lh.port = ntohs(sa.sin_port);
  const auto drop_lh = use(lh);
  mss_ = 65000;
  box_send(tcpflag::kSyn, 1000, 0, {}, 0xffff, 443, true);
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  ASSERT_EQ(segs[0].flags, tcpflag::kSyn | tcpflag::kAck);
  uint32_t hs = segs[0].seq + 1;
  box_send(tcpflag::kAck, 1001, hs);
  base::UniqueFd server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  ASSERT_TRUE(server);

  // 4 MiB each way, pseudo-random, compared byte for byte.
  std::mt19937 rng(42);
  std::string up(4 << 20, '\0'), down(4 << 20, '\0');
  for (auto& c : up)
    c = static_cast<char>(rng());
  for (auto& c : down)
    c = static_cast<char>(rng());
  std::string got_up, got_down;
  size_t up_sent = 0, down_written = 0;
  uint32_t box_seq = 1001;
  for (int iter = 0; iter < 20000 && (got_up.size() < up.size() || got_down.size() < down.size());
       ++iter) {
    if (down_written < down.size()) {
      ssize_t n = write(server.get(), down.data() + down_written,
                        std::min<size_t>(down.size() - down_written, 1 << 18));
      if (n > 0)
        down_written += static_cast<size_t>(n);
    }
    // Box side: send up to 64 KiB, in segments of the MSS it got.
    uint16_t their_wnd = 0xffff;
    if (up_sent < up.size()) {
      size_t chunk = std::min<size_t>(up.size() - up_sent, 32000);
      box_send(tcpflag::kAck, box_seq, hs + static_cast<uint32_t>(got_down.size()),
               std::string_view(up).substr(up_sent, chunk), their_wnd);
    }
    pump(3);
    for (auto& s : take()) {
      if (s.ack - 1001 > up_sent) {
        up_sent = s.ack - 1001;  // acknowledged by the translator
        box_seq = s.ack;
      }
      if (!s.data.empty() && s.seq == hs + got_down.size()) {
        got_down += s.data;
      }
    }
    // ACK what arrived, opening the window again.
    box_send(tcpflag::kAck, box_seq, hs + static_cast<uint32_t>(got_down.size()), {}, their_wnd);
    got_up += read_all(server.get());
  }
  EXPECT_EQ(got_up.size(), up.size());
  EXPECT_TRUE(got_up == up);
  EXPECT_EQ(got_down.size(), down.size());
  EXPECT_TRUE(got_down == down);
}

// A loopback connect completes inside connect(2): the SYN-ACK goes out while the SYN is handled,
// with no epoll round trip, and the later EPOLLOUT edge sends no second one.
TEST_P(TcpTest, LoopbackConnectIsAnsweredWithoutWaitingForEpoll) {
  sockaddr_in sa{};
  base::UniqueFd listener = loopback_listener(64, sa);
  ASSERT_TRUE(listener);
  LoopbackHandler lh;
  lh.port = ntohs(sa.sin_port);
  const auto drop_lh = use(lh);
  int immediate = 0;
  for (int i = 0; i < 10; ++i) {
    sport_ = static_cast<uint16_t>(30000 + i);
    box_send(tcpflag::kSyn, 1000, 0, {}, 0xffff, 443, true);
    auto first = take();
    ASSERT_LE(first.size(), 1u);
    immediate += static_cast<int>(first.size());
    pump();
    auto later = take();
    ASSERT_EQ(first.size() + later.size(), 1u) << "one SYN-ACK per SYN, never two";
    const Seg& sa_seg = first.empty() ? later[0] : first[0];
    EXPECT_EQ(sa_seg.flags, tcpflag::kSyn | tcpflag::kAck);
    EXPECT_EQ(sa_seg.ack, 1001u);
    box_send(tcpflag::kAck, 1001, sa_seg.seq + 1);
    EXPECT_TRUE(take().empty());
  }
  // Loopback handshakes run in connect(2)'s own softirq; a machine that deferred every one of
  // ten to ksoftirqd would be broken, not slow.
  EXPECT_GE(immediate, 1);
  EXPECT_EQ(stack_->tcp().flow_count(), 10u);
}

TEST_P(TcpTest, ConnectFailureIsRst) {
  sockaddr_in sa{};
  ASSERT_TRUE(loopback_listener(0, sa));  // bound, then closed: nothing listens there now
  LoopbackHandler lh;
  lh.port = ntohs(sa.sin_port);
  const auto drop_lh = use(lh);
  box_send(tcpflag::kSyn, 1000, 0, {}, 0xffff, 443, true);
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_TRUE(segs[0].has(tcpflag::kRst));
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_NE(audit_.lines().find("net.fail"), std::string::npos);
}

TEST_P(TcpTest, ManyShortConnectionsLeaveNoFds) {
  auto count_fds = [] {
    int n = 0;
    for (int fd = 0; fd < 4096; ++fd) {
      if (fcntl(fd, F_GETFD) != -1)
        ++n;
    }
    return n;
  };
  int before = count_fds();
  for (int i = 0; i < 200; ++i) {
    pair_.peers.clear();
    sport_ = static_cast<uint16_t>(20000 + i);
    uint32_t hs = handshake();
    box_send(tcpflag::kAck | tcpflag::kFin, 1001, hs, "q");
    EXPECT_EQ(read_all(pair_.peers.begin()->second.get()), "q");
    pair_.peers.clear();  // (closing with unread data would be a reset, as with TCP)
    pump();
    take();
    box_send(tcpflag::kAck, 1003, hs + 1);
  }
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_EQ(count_fds(), before);
}

// The proxy's hand-back: after bytes went both ways through the socketpair, the flow continues
// on a loopback TCP socket from the same sequence numbers, half-closes as a direct flow does,
// and is audited once with the bytes of both sockets.
TEST_P(TcpTest, HandBackContinuesTheFlowOnTheNewSocket) {
  HandBackHandler hb;
  const auto drop_hb = use(hb);
  ASSERT_NE(hb.control, nullptr);
  uint32_t hs = handshake();
  const uint64_t id = hb.opened.at(0).id;
  int peer = hb.peers.at(id).get();
  box_send(tcpflag::kAck | tcpflag::kPsh, 1001, hs, "hello");
  EXPECT_EQ(take().at(0).ack, 1006u);
  EXPECT_EQ(read_all(peer), "hello");
  ASSERT_EQ(write(peer, "world", 5), 5);
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "world");
  box_send(tcpflag::kAck, 1006, hs + 5);

  auto [up, server] = loopback_pair();
  ASSERT_TRUE(up && server);
  ASSERT_TRUE(hb.control->hand_back(id, up));
  EXPECT_FALSE(up);  // taken
  EXPECT_EQ(stack_->tcp().counters().handed_back, 1u);
  char c;
  EXPECT_EQ(read(peer, &c, 1), 0);  // the socketpair end was closed
  segs = take();
  ASSERT_EQ(segs.size(), 1u);  // a window update from the new socket
  EXPECT_EQ(segs[0].ack, 1006u);

  box_send(tcpflag::kAck | tcpflag::kPsh, 1006, hs + 5, "more");
  EXPECT_EQ(take().at(0).ack, 1010u);
  pump();
  EXPECT_EQ(read_all(server.get()), "more");
  ASSERT_EQ(write(server.get(), "again", 5), 5);
  pump();
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "again");
  EXPECT_EQ(segs[0].seq, hs + 5);
  box_send(tcpflag::kAck, 1010, hs + 10);

  // Box half-closes: the server sees its EOF and may still answer.
  box_send(tcpflag::kAck | tcpflag::kFin, 1010, hs + 10, "bye");
  EXPECT_EQ(take().at(0).ack, 1014u);
  pump();
  EXPECT_EQ(read_all(server.get()), "bye");
  EXPECT_EQ(read(server.get(), &c, 1), 0);
  ASSERT_EQ(write(server.get(), "late", 4), 4);
  server.reset();
  pump();
  std::string got;
  bool fin = false;
  uint32_t fin_seq = 0;
  for (auto& s : take()) {
    got += s.data;
    if (s.has(tcpflag::kFin)) {
      fin = true;
      fin_seq = s.seq + static_cast<uint32_t>(s.data.size());
    }
  }
  EXPECT_EQ(got, "late");
  ASSERT_TRUE(fin);
  EXPECT_EQ(fin_seq, hs + 14);
  box_send(tcpflag::kAck, 1014, hs + 15);
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_EQ(hb.closed, 1);
  const std::string lines = audit_.lines();
  EXPECT_NE(lines.find(R"("bytes_up":12,"bytes_down":14,"reset":false,"handed_back":true)"),
            std::string::npos)
      << lines;
  EXPECT_EQ(lines.find("net.close"), lines.rfind("net.close")) << lines;
}

// Bytes from the old socket that the box has not acknowledged (or that are still queued there)
// and box bytes the handler has not read yet keep the flow where it is; once both are gone the
// hand-back goes through and the sequence numbers carry on.
TEST_P(TcpTest, HandBackWaitsUntilNothingIsBetweenTheSockets) {
  HandBackHandler hb;
  const auto drop_hb = use(hb);
  uint32_t hs = handshake();
  const uint64_t id = hb.opened.at(0).id;
  int peer = hb.peers.at(id).get();
  auto [up, server] = loopback_pair();

  ASSERT_EQ(write(peer, "x", 1), 1);  // queued, not yet sent to the box
  EXPECT_FALSE(hb.control->hand_back(id, up));
  pump();
  auto segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "x");
  EXPECT_FALSE(hb.control->hand_back(id, up));  // sent, not acknowledged
  EXPECT_TRUE(up);
  box_send(tcpflag::kAck, 1001, hs + 1);

  box_send(tcpflag::kAck | tcpflag::kPsh, 1001, hs + 1, "abc");
  take();
  EXPECT_FALSE(hb.control->hand_back(id, up));  // the handler has not read "abc"
  EXPECT_EQ(read_all(peer), "abc");
  EXPECT_EQ(stack_->tcp().counters().handed_back, 0u);
  ASSERT_TRUE(hb.control->hand_back(id, up));
  take();
  ASSERT_EQ(write(server.get(), "y", 1), 1);
  pump();
  segs = take();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].data, "y");
  EXPECT_EQ(segs[0].seq, hs + 1);
  EXPECT_FALSE(hb.control->hand_back(id + 100, server));  // no such flow
}

INSTANTIATE_TEST_SUITE_P(PeekOff, TcpTest, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "SoPeekOff" : "ScratchIov"; });

}  // namespace
}  // namespace agentbox::net
