// The proxy's hand-back through the real network stack: box frames into a net::Stack whose flows
// the ProxyHandler serves (on one event::Loop, as in a session), loopback TCP upstreams, real
// ClientHellos from OpenSSL. A passthrough flow leaves the proxy once the ClientHello is upstream,
// a raw_tcp flow never enters it, and a flow the proxy already relayed upstream bytes for (or
// that the box half-closed before the decision) is relayed to the end as before.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "agentbox/audit/audit.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/net/stack.hpp"
#include "agentbox/proxy/proxy_handler.hpp"

namespace agentbox::proxy {
namespace {

using namespace std::chrono_literals;
using base::UniqueFd;
using net::tcpflag::kAck;
using net::tcpflag::kFin;
using net::tcpflag::kPsh;
using net::tcpflag::kSyn;

constexpr const char* kTls = "tls.example.test";
constexpr const char* kSlow = "slow.example.test";
constexpr const char* kSsh = "ssh.example.test";
constexpr const char* kLate = "late.example.test";  // raw, resolved on the worker
const net::Ip4 kBox = net::ip4(10, 0, 2, 100);
const net::Mac kBoxMac = {0x02, 0, 0, 0, 0, 0x01};
constexpr uint16_t kMss = 65000;

// net::Poller over the loop (what the session's LoopPoller does).
class LoopPoller final : public net::Poller {
 public:
  LoopPoller(event::Loop& loop, std::function<void(uint64_t, uint32_t)> on)
      : loop_(loop), on_(std::move(on)) {}
  ~LoopPoller() override {
    for (auto& [fd, w] : watches_) {
      loop_.unwatch(w);
    }
  }
  void watch(int fd, uint32_t events, uint64_t token) override {
    unwatch(fd);
    auto id = loop_.watch_fd(fd, events, [this, token](uint32_t ev) { on_(token, ev); });
    ASSERT_TRUE(id.has_value());
    watches_[fd] = *id;
  }
  void unwatch(int fd) override {
    auto it = watches_.find(fd);
    if (it != watches_.end()) {
      loop_.unwatch(it->second);
      watches_.erase(it);
    }
  }

 private:
  event::Loop& loop_;
  std::function<void(uint64_t, uint32_t)> on_;
  std::map<int, event::WatchId> watches_;
};

struct CaptureTap : net::FrameSink {
  std::vector<std::vector<std::byte>> frames;
  void send_frame(net::Bytes f) override { frames.emplace_back(f.begin(), f.end()); }
};

UniqueFd listen_loopback(uint16_t& port, int backlog = 8) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(listen(fd.get(), backlog), 0);
  socklen_t len = sizeof a;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

// A real ClientHello naming `sni` (what the box's TLS client would send first).
std::string client_hello(const char* sni) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  (void)SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(sni));
  (void)SSL_connect(ssl);
  std::string out;
  char buf[4096];
  int n = 0;
  while ((n = BIO_read(wbio, buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

std::string read_some(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& ch : s) {
    ch = static_cast<char>(rng());
  }
  return s;
}

class HandBackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_.emplace(std::move(*event::Loop::create()));
    tls_listener_ = listen_loopback(tls_port_);
    ssh_listener_ = listen_loopback(ssh_port_);
    slow_listener_ = listen_loopback(slow_port_, 0);
    policy_ = *policy::EgressPolicy::parse({std::string(kTls) + ":443", std::string(kSlow) + ":443",
                                            std::string(kSsh) + ":22",
                                            std::string(kLate) + ":" + std::to_string(ssh_port_),
                                            "127.0.0.1/32:" + std::to_string(ssh_port_)});
    ProxyOptions o;
    for (auto [name, port, to] :
         {std::tuple{kTls, 443, tls_port_}, std::tuple{kSlow, 443, slow_port_},
          std::tuple{kSsh, 22, ssh_port_}}) {
      o.connect_to.push_back(*net::parse_connect_to(std::string(name) + ":" + std::to_string(port) +
                                                    ":127.0.0.1:" + std::to_string(to)));
    }
    const std::string late_port = std::to_string(ssh_port_);
    o.raw_tcp = {std::string(kSsh) + ":22", std::string(kLate) + ":" + late_port};
    // kLate has no --connect-to: the resolver (on the worker) answers loopback, which the
    // rebinding guard lets through because a CIDR rule names it.
    o.resolver = [](const std::string& name) -> base::Result<std::vector<policy::IpAddr>> {
      if (name != kLate) {
        return base::Error::msg("unknown name");
      }
      return std::vector<policy::IpAddr>{policy::IpAddr::v4(0x7f000001)};
    };
    auto h = ProxyHandler::create(*loop_, policy_, o, nullptr, nullptr, audit_);
    ASSERT_TRUE(h.has_value()) << h.error().message();
    handler_ = std::move(*h);
    poller_ = std::make_unique<LoopPoller>(*loop_, [this](uint64_t token, uint32_t ev) {
      stack_->tcp().on_socket(token, ev, net::Clock::now());
    });
    stack_.emplace(net::StackConfig{}, policy_, *handler_, *poller_, tap_, audit_);
  }

  void TearDown() override {
    stack_.reset();
    poller_.reset();
    handler_.reset();
  }

  void pump(int rounds = 20) {
    for (int i = 0; i < rounds; ++i) {
      auto n = loop_->run_once(i == 0 ? 10ms : 2ms);
      if (n && *n == 0 && i > 0) {
        return;
      }
    }
  }

  // One box connection, driven by hand: frames in, the translator's frames collected.
  struct Box {
    HandBackTest* t = nullptr;
    net::Ip4 dst = 0;
    uint16_t dport = 0;
    uint16_t sport = 0;
    uint32_t seq = 1000;  // next byte of the box
    uint32_t ack = 0;     // next byte expected from the host
    std::string got;
    bool fin = false;
    bool reset = false;

    void send(uint8_t flags, std::string_view data = {}) {
      net::TcpOut o;
      o.src = kBox;
      o.dst = dst;
      o.sport = sport;
      o.dport = dport;
      o.seq = seq;
      o.ack = ack;
      o.flags = flags;
      o.window = 0xffff;
      if ((flags & kSyn) != 0) {
        o.mss = kMss;
        o.wscale = 7;
      }
      std::vector<std::byte> f;
      net::build_tcp(f, net::L2{.src = kBoxMac, .dst = {}}, o,
                     net::Bytes(reinterpret_cast<const std::byte*>(data.data()), data.size()));
      t->stack_->on_frame(f, net::Clock::now(), true);
    }
    // Takes the frames for this flow: data in order, ACK of ours (returned), FIN, RST.
    uint32_t collect() {
      uint32_t acked = seq;
      auto& frames = t->tap_.frames;
      for (auto& fr : frames) {
        auto e = net::parse_ethernet(fr);
        auto ip = e ? net::parse_ipv4(e->payload) : std::nullopt;
        auto s = ip ? net::parse_tcp(ip->payload, ip->src, ip->dst) : std::nullopt;
        if (!s || s->dport != sport) {
          continue;
        }
        if (s->has(net::tcpflag::kRst)) {
          reset = true;
        }
        if (s->has(kSyn)) {
          ack = s->seq + 1;
        } else if (s->seq == ack) {
          got.append(reinterpret_cast<const char*>(s->payload.data()), s->payload.size());
          ack += static_cast<uint32_t>(s->payload.size());
          if (s->has(kFin)) {
            fin = true;
            ack += 1;
          }
        }
        if (s->has(kAck) && static_cast<int32_t>(s->ack - acked) > 0) {
          acked = s->ack;
        }
      }
      frames.clear();
      return acked;
    }
    // Sends `data` (segments of at most 32000, resent from what was acknowledged), pumping the
    // loop; the host side's bytes are read by `server` as they come.
    void upload(std::string_view data, int server, std::string& server_got) {
      size_t done = 0;
      for (int i = 0; i < 20000 && done < data.size(); ++i) {
        send(kAck | kPsh, data.substr(done, std::min<size_t>(32000, data.size() - done)));
        t->pump(3);
        const uint32_t acked = collect();
        const uint32_t start = seq;
        seq = acked;
        done += acked - start;
        send(kAck);
        server_got += read_some(server);
      }
      for (int i = 0; i < 200 && server_got.size() < data.size(); ++i) {
        t->pump(2);
        server_got += read_some(server);
      }
    }
  };

  Box connect(const char* name, uint16_t port) {
    Box b;
    b.t = this;
    b.dst = *stack_->pool().assign(name);
    b.dport = port;
    b.sport = next_sport_++;
    b.send(kSyn);
    b.seq += 1;
    for (int i = 0; i < 100 && b.ack == 0; ++i) {
      pump(2);
      b.collect();
    }
    EXPECT_NE(b.ack, 0u) << "no SYN-ACK";
    b.send(kAck);
    return b;
  }

  // Downloads `data` written by `server`, the box acknowledging as it goes.
  void download(Box& b, int server, const std::string& data) {
    size_t written = 0;
    for (int i = 0; i < 20000 && b.got.size() < data.size(); ++i) {
      if (written < data.size()) {
        const ssize_t n =
            write(server, data.data() + written, std::min<size_t>(data.size() - written, 1 << 18));
        if (n > 0) {
          written += static_cast<size_t>(n);
        }
      }
      pump(3);
      b.collect();
      b.send(kAck);
    }
  }

  UniqueFd accept_one(int listener) {
    pollfd p{.fd = listener, .events = POLLIN, .revents = 0};
    EXPECT_EQ(poll(&p, 1, 5000), 1);
    return UniqueFd(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  }

  size_t count(const std::string& what) const {
    const std::string lines = audit_.lines();
    size_t n = 0;
    for (size_t at = lines.find(what); at != std::string::npos; at = lines.find(what, at + 1)) {
      ++n;
    }
    return n;
  }

  std::optional<event::Loop> loop_;
  audit::MemorySink audit_;
  policy::EgressPolicy policy_;
  UniqueFd tls_listener_, ssh_listener_, slow_listener_;
  uint16_t tls_port_ = 0, ssh_port_ = 0, slow_port_ = 0;
  std::unique_ptr<ProxyHandler> handler_;
  std::unique_ptr<LoopPoller> poller_;
  CaptureTap tap_;
  std::optional<net::Stack> stack_;
  uint16_t next_sport_ = 40000;
};

TEST_F(HandBackTest, PassthroughFlowIsHandedBackAndCarriesBulkBothWays) {
  Box b = connect(kTls, 443);
  const std::string hello = client_hello(kTls);
  ASSERT_GT(hello.size(), 100u);
  b.send(kAck | kPsh, hello);
  b.seq += static_cast<uint32_t>(hello.size());
  pump();
  b.collect();
  EXPECT_EQ(handler_->counters().passthrough, 1u);
  EXPECT_EQ(handler_->counters().handed_back, 1u);
  EXPECT_EQ(stack_->tcp().counters().handed_back, 1u);
  EXPECT_EQ(handler_->connection_count(), 0u);  // the Conn is released at once
  UniqueFd server = accept_one(tls_listener_.get());
  ASSERT_TRUE(server);
  std::string server_got;
  for (int i = 0; i < 100 && server_got.size() < hello.size(); ++i) {
    pump(1);
    server_got += read_some(server.get());
  }
  EXPECT_EQ(server_got, hello);  // replayed upstream before the swap, exactly once

  const std::string down = random_bytes(3 << 20, 1);
  const std::string up = random_bytes(3 << 20, 2);
  download(b, server.get(), down);
  EXPECT_TRUE(b.got == down) << b.got.size();
  server_got.clear();
  b.upload(up, server.get(), server_got);
  EXPECT_TRUE(server_got == up) << server_got.size();

  // Half-close as on a direct flow: the box's FIN reaches the server, which still answers.
  b.send(kAck | kFin);
  b.seq += 1;
  pump();
  b.collect();
  char c;
  for (int i = 0; i < 100 && read(server.get(), &c, 1) != 0; ++i) {
    pump(1);
  }
  EXPECT_EQ(read(server.get(), &c, 1), 0);
  ASSERT_EQ(write(server.get(), "tail", 4), 4);
  server.reset();
  const size_t before = b.got.size();
  for (int i = 0; i < 100 && !b.fin; ++i) {
    pump(2);
    b.collect();
  }
  EXPECT_TRUE(b.fin);
  EXPECT_EQ(b.got.substr(before), "tail");
  b.send(kAck);
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_FALSE(b.reset);
  // One close event, with the stack's counts over both sockets.
  EXPECT_EQ(count("\"net.close\""), 1u) << audit_.lines();
  const std::string want = "\"bytes_up\":" + std::to_string(hello.size() + up.size()) +
                           ",\"bytes_down\":" + std::to_string(down.size() + 4) +
                           ",\"reset\":false,\"handed_back\":true";
  EXPECT_NE(audit_.lines().find(want), std::string::npos) << audit_.lines();
  EXPECT_EQ(count("\"mode\":\"passthrough\""), 1u);
}

TEST_F(HandBackTest, RawTcpFlowIsTheUpstreamSocketFromTheStart) {
  Box b = connect(kSsh, 22);
  EXPECT_EQ(handler_->connection_count(), 0u);  // never a Conn
  EXPECT_EQ(handler_->counters().raw, 1u);
  EXPECT_EQ(handler_->counters().handed_back, 1u);
  UniqueFd server = accept_one(ssh_listener_.get());
  ASSERT_TRUE(server);
  const std::string banner = "SSH-2.0-agentbox-test\r\n";
  ASSERT_EQ(write(server.get(), banner.data(), banner.size()), static_cast<ssize_t>(banner.size()));
  for (int i = 0; i < 100 && b.got.size() < banner.size(); ++i) {
    pump(2);
    b.collect();
  }
  EXPECT_EQ(b.got, banner);
  b.send(kAck);
  std::string server_got;
  b.upload("hello\n", server.get(), server_got);
  EXPECT_EQ(server_got, "hello\n");
  server.reset();  // the server closes first
  for (int i = 0; i < 100 && !b.fin; ++i) {
    pump(2);
    b.collect();
  }
  EXPECT_TRUE(b.fin);
  b.send(kAck | kFin);
  b.seq += 1;
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_EQ(count("\"net.close\""), 1u);
  // Never on a socketpair: a direct flow's close event (nothing was handed back mid-flow).
  EXPECT_NE(audit_.lines().find(R"("bytes_up":6,"bytes_down":23,"reset":false})"),
            std::string::npos)
      << audit_.lines();
  EXPECT_NE(audit_.lines().find(R"("mode":"raw")"), std::string::npos);
}

// A raw flow whose name is resolved on the worker waits plugged (no SYN-ACK); when the name
// resolves, the upstream socket replaces the socketpair before the box was answered, and the
// translator answers it when that connect completes.
TEST_F(HandBackTest, RawTcpFlowResolvedLaterIsHandedBackBeforeTheSynAck) {
  Box b = connect(kLate, ssh_port_);
  EXPECT_EQ(handler_->counters().raw, 1u);
  EXPECT_EQ(handler_->counters().handed_back, 1u);
  EXPECT_EQ(stack_->tcp().counters().handed_back, 1u);
  EXPECT_EQ(handler_->connection_count(), 0u);
  UniqueFd server = accept_one(ssh_listener_.get());
  ASSERT_TRUE(server);
  ASSERT_EQ(write(server.get(), "ready\n", 6), 6);
  for (int i = 0; i < 100 && b.got.size() < 6; ++i) {
    pump(2);
    b.collect();
  }
  EXPECT_EQ(b.got, "ready\n");
  b.send(kAck);
  std::string server_got;
  const std::string up = random_bytes(1 << 20, 5);
  b.upload(up, server.get(), server_got);
  EXPECT_TRUE(server_got == up) << server_got.size();
  b.send(kAck | kFin);
  b.seq += 1;
  pump();
  server.reset();
  for (int i = 0; i < 100 && !b.fin; ++i) {
    pump(2);
    b.collect();
  }
  EXPECT_TRUE(b.fin);
  b.send(kAck);
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  const std::string want = "\"bytes_up\":" + std::to_string(up.size()) +
                           ",\"bytes_down\":6,\"reset\":false,\"handed_back\":true";
  EXPECT_NE(audit_.lines().find(want), std::string::npos) << audit_.lines();
}

// The box sends its ClientHello with its FIN: no hand-back (the FIN is in the socketpair), the
// proxy relays the flow to the end, half-close included.
TEST_F(HandBackTest, BoxHalfClosedBeforeTheDecisionIsRelayedToTheEnd) {
  Box b = connect(kTls, 443);
  const std::string hello = client_hello(kTls);
  b.send(kAck | kPsh | kFin, hello);
  b.seq += static_cast<uint32_t>(hello.size()) + 1;
  pump();
  b.collect();
  EXPECT_EQ(handler_->counters().passthrough, 1u);
  EXPECT_EQ(handler_->counters().handed_back, 0u);
  UniqueFd server = accept_one(tls_listener_.get());
  std::string server_got;
  char c = 0;
  for (int i = 0; i < 200; ++i) {
    pump(1);
    server_got += read_some(server.get());
    if (server_got.size() == hello.size() && recv(server.get(), &c, 1, MSG_DONTWAIT) == 0) {
      break;
    }
  }
  EXPECT_EQ(server_got, hello);
  const std::string down = random_bytes(1 << 20, 3);
  download(b, server.get(), down);
  EXPECT_TRUE(b.got == down);
  server.reset();
  for (int i = 0; i < 100 && !b.fin; ++i) {
    pump(2);
    b.collect();
  }
  EXPECT_TRUE(b.fin);
  b.send(kAck);
  for (int i = 0; i < 100 && (stack_->tcp().flow_count() > 0 || handler_->connection_count() > 0);
       ++i) {
    pump(2);
  }
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_EQ(handler_->connection_count(), 0u);
  EXPECT_EQ(stack_->tcp().counters().handed_back, 0u);
  EXPECT_EQ(count("\"net.close\""), 1u);
  EXPECT_EQ(count("handed_back"), 0u);
}

// The upstream spoke before the proxy could write the ClientHello (its connect completed late,
// the SYN dropped by a full accept queue): those bytes went through the proxy, so the flow stays
// relayed, and still carries everything both ways.
TEST_F(HandBackTest, FlowWithUpstreamBytesRelayedIsNotHandedBack) {
  // Fill the accept queue (backlog 0 holds one): the proxy's SYN is dropped and retried in ~1 s.
  UniqueFd filler(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(slow_port_);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(filler.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  Box b = connect(kSlow, 443);
  const std::string hello = client_hello(kSlow);
  b.send(kAck | kPsh, hello);
  b.seq += static_cast<uint32_t>(hello.size());
  pump();
  b.collect();
  EXPECT_EQ(handler_->counters().passthrough, 1u);
  EXPECT_EQ(handler_->counters().handed_back, 0u);    // the upstream is still connecting
  UniqueFd first = accept_one(slow_listener_.get());  // the filler: room for the retried SYN
  ASSERT_TRUE(first);
  // Not pumping: the server greets before the proxy learns that its connect completed.
  UniqueFd server = accept_one(slow_listener_.get());
  ASSERT_TRUE(server);
  ASSERT_EQ(write(server.get(), "early", 5), 5);
  for (int i = 0; i < 100 && b.got.size() < 5; ++i) {
    pump(2);
    b.collect();
  }
  EXPECT_EQ(b.got, "early");
  b.send(kAck);
  EXPECT_EQ(handler_->counters().handed_back, 0u);
  EXPECT_EQ(handler_->connection_count(), 1u);
  std::string server_got;
  b.upload(std::string(256 * 1024, 'u'), server.get(), server_got);
  EXPECT_EQ(server_got, hello + std::string(256 * 1024, 'u'));
  b.got.clear();
  const std::string down = random_bytes(1 << 20, 4);
  download(b, server.get(), down);
  EXPECT_TRUE(b.got == down);
  b.send(kAck | kFin);
  b.seq += 1;
  server.reset();
  for (int i = 0; i < 100 && !b.fin; ++i) {
    pump(2);
    b.collect();
  }
  EXPECT_TRUE(b.fin);
  b.send(kAck);
  for (int i = 0; i < 100 && handler_->connection_count() > 0; ++i) {
    pump(2);
  }
  EXPECT_EQ(stack_->tcp().flow_count(), 0u);
  EXPECT_EQ(handler_->connection_count(), 0u);
  EXPECT_EQ(stack_->tcp().counters().handed_back, 0u);
  EXPECT_EQ(count("\"net.close\""), 1u);
}

}  // namespace
}  // namespace agentbox::proxy
