// Upstream names resolved off the event loop: while one flow's lookup is slow, another flow
// completes a whole HTTP exchange; the slow flow's box end stays "connecting" (no SYN-ACK for
// the box) until its name resolves; a name that resolves only to a refused address is a reset,
// as a refusal at SYN time is. Real sockets and a real loopback server; the resolver function
// is injected (it runs on the worker thread) so one lookup can be made slow on purpose.
#include <arpa/inet.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "../event/pump.hpp"
#include "agentbox/proxy/proxy_handler.hpp"

namespace agentbox::proxy {
namespace {

using namespace std::chrono_literals;

// A plain HTTP/1.1 server on loopback: answers every request head with "ok <path>".
class TinyServer {
 public:
  TinyServer() {
    fd_ = base::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(::listen(fd_.get(), 16), 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~TinyServer() {
    stop_ = true;
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] int accepted() const { return accepted_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) {
        continue;
      }
      base::UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) {
        continue;
      }
      ++accepted_;
      std::string got;
      char buf[4096];
      for (int i = 0; i < 100 && got.find("\r\n\r\n") == std::string::npos; ++i) {
        pollfd q{c.get(), POLLIN, 0};
        if (::poll(&q, 1, 100) <= 0) {
          continue;
        }
        const ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
        if (n <= 0) {
          break;
        }
        got.append(buf, static_cast<size_t>(n));
      }
      const size_t sp = got.find(' ');
      const std::string path = got.substr(sp + 1, got.find(' ', sp + 1) - sp - 1);
      const std::string body = "ok " + path;
      const std::string resp =
          fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                      body.size(), body);
      (void)::send(c.get(), resp.data(), resp.size(), MSG_NOSIGNAL);
    }
  }
  base::UniqueFd fd_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
};

using event::testing::pump_until;

short poll_now(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, 0) == 1 ? p.revents : 0;
}

net::FlowInfo flow(uint64_t id, const std::string& name, uint16_t port) {
  net::FlowInfo fi;
  fi.id = id;
  fi.name = name;
  fi.orig_port = port;
  fi.rule = name;
  return fi;
}

class ResolveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = event::Loop::create();
    ASSERT_TRUE(loop);
    loop_.emplace(std::move(*loop));
    const std::string p = std::to_string(server_.port());
    auto policy = policy::EgressPolicy::parse(
        {"slow.test:" + p, "fast.test:" + p, "rebind.test:" + p, "127.0.0.1/32:" + p});
    ASSERT_TRUE(policy) << policy.error().message();
    policy_.emplace(std::move(*policy));
    ProxyOptions o;
    // Runs on the worker thread, which is detached and may outlive the fixture: it touches only
    // the shared state.
    o.resolver = [st = st_](const std::string& name) -> base::Result<std::vector<policy::IpAddr>> {
      ++st->lookups;
      if (name == "slow.test") {
        st->slow_running = true;
        for (int i = 0; i < 5000 && !st->slow_release; ++i) {
          std::this_thread::sleep_for(1ms);
        }
      }
      if (name == "rebind.test") {
        return std::vector<policy::IpAddr>{policy::IpAddr::v4(0x7f000002)};  // 127.0.0.2
      }
      return std::vector<policy::IpAddr>{policy::IpAddr::v4(0x7f000001)};
    };
    auto h = ProxyHandler::create(*loop_, *policy_, std::move(o), nullptr, nullptr, audit_);
    ASSERT_TRUE(h) << h.error().message();
    handler_ = std::move(*h);
  }
  void TearDown() override {
    st_->slow_release = true;
    handler_.reset();
  }
  // The box's side of a flow: sends a request, reads the whole response (pumping the loop).
  std::string exchange(int fd, const std::string& host) {
    const std::string req =
        fmt::format("GET /{} HTTP/1.1\r\nHost: {}:{}\r\n\r\n", host, host, server_.port());
    EXPECT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    std::string got;
    (void)pump_until(*loop_, [&] {
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
      }
      return n == 0 || got.find("ok /") != std::string::npos;
    });
    return got;
  }

  TinyServer server_;
  std::optional<event::Loop> loop_;
  std::optional<policy::EgressPolicy> policy_;
  audit::MemorySink audit_;
  std::unique_ptr<ProxyHandler> handler_;
  struct Shared {
    std::atomic<int> lookups{0};
    std::atomic<bool> slow_running{false};
    std::atomic<bool> slow_release{false};
  };
  std::shared_ptr<Shared> st_ = std::make_shared<Shared>();
};

TEST_F(ResolveTest, SlowLookupDoesNotStallAnotherFlow) {
  auto slow = handler_->on_open(flow(1, "slow.test", server_.port()));
  ASSERT_TRUE(slow) << slow.error().message();
  // Not connected yet: the translator waits for writability before it answers the box's SYN.
  EXPECT_FALSE(slow->connected);
  ASSERT_TRUE(pump_until(*loop_, [&] { return st_->slow_running.load(); }));
  EXPECT_EQ(poll_now(slow->fd.get(), POLLOUT), 0) << "the box would get SYN-ACK before the lookup";

  auto fast = handler_->on_open(flow(2, "fast.test", server_.port()));
  ASSERT_TRUE(fast) << fast.error().message();
  ASSERT_TRUE(
      pump_until(*loop_, [&] { return (poll_now(fast->fd.get(), POLLOUT) & POLLOUT) != 0; }));
  const std::string got = exchange(fast->fd.get(), "fast.test");
  EXPECT_NE(got.find("200 OK"), std::string::npos) << got;
  EXPECT_NE(got.find("ok /fast.test"), std::string::npos) << got;
  // All of that happened while the slow lookup was still running.
  EXPECT_FALSE(st_->slow_release.load());
  EXPECT_EQ(poll_now(slow->fd.get(), POLLOUT), 0);
  EXPECT_EQ(server_.accepted(), 1);

  st_->slow_release = true;
  ASSERT_TRUE(
      pump_until(*loop_, [&] { return (poll_now(slow->fd.get(), POLLOUT) & POLLOUT) != 0; }));
  int err = -1;
  socklen_t len = sizeof err;
  ASSERT_EQ(::getsockopt(slow->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, 0);
  const std::string got2 = exchange(slow->fd.get(), "slow.test");
  EXPECT_NE(got2.find("ok /slow.test"), std::string::npos) << got2;
  // A second flow to the same name is answered from the session's cache: connected at once.
  const int before = st_->lookups;
  auto again = handler_->on_open(flow(3, "fast.test", server_.port()));
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->connected);
  EXPECT_EQ(st_->lookups.load(), before);
  EXPECT_NE(exchange(again->fd.get(), "fast.test").find("ok /fast.test"), std::string::npos);
}

// The rebinding guard runs on the resolved address before any connect: 127.0.0.2 is not named
// by a rule, so the flow is reset (ECONNRESET on the translator's end: the box gets RST) and
// nothing reaches the listener.
TEST_F(ResolveTest, RefusedAddressAfterAsyncLookupResetsTheFlow) {
  auto r = handler_->on_open(flow(1, "rebind.test", server_.port()));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(r->connected);
  ASSERT_TRUE(pump_until(*loop_, [&] { return poll_now(r->fd.get(), POLLOUT) != 0; }));
  int err = 0;
  socklen_t len = sizeof err;
  ASSERT_EQ(::getsockopt(r->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, ECONNRESET);
  EXPECT_NE(audit_.lines().find("resolved only to refused addresses"), std::string::npos)
      << audit_.lines();
  EXPECT_EQ(server_.accepted(), 0);
  EXPECT_EQ(handler_->connection_count(), 0u);
  // Cached now: the next attempt is refused at once (the translator sends RST for the SYN).
  EXPECT_FALSE(handler_->on_open(flow(2, "rebind.test", server_.port())));
}

// serve() (tests and benchmarks hand it accepted sockets) waits for the lookup too, with the box
// side unread; a refused name then closes the box side.
TEST_F(ResolveTest, ServedSocketWaitsForTheLookup) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  base::UniqueFd box(sv[0]);
  ASSERT_TRUE(handler_->serve(flow(1, "fast.test", server_.port()), base::UniqueFd(sv[1])));
  EXPECT_NE(exchange(box.get(), "fast.test").find("ok /fast.test"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::proxy
