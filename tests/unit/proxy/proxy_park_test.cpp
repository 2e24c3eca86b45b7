// ProxyHandler end to end: the upstream connection of an idle intercepted flow is closed
// (ProxyOptions::upstream_idle) and the next request on the same box connection reconnects,
// resuming the TLS session, with the credential swapped as before. Oracle: the upstream's own
// log (its connections, and the requests and Authorization values it received).
#include <gtest/gtest.h>

#include <thread>

#include "agentbox/proxy/proxy_handler.hpp"
#include "proxy_test_util.hpp"

namespace agentbox::proxy {
namespace {

using namespace testing;  // NOLINT: the test rig

class ProxyParkTest : public ProxyHandlerTest {
 protected:
  void SetUp() override {
    ProxyHandlerTest::SetUp();
    options_.upstream_idle = 200ms;
    make_handler();
  }
};

TEST_F(ProxyParkTest, IdleUpstreamIsClosedAndTheNextRequestReconnects) {
  UniqueFd fd = open_flow(kApi);
  Upstream& server = *servers_[kApi];
  int closed_in_pause = -1;  // the upstream's count of finished connections before /second
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::vector<std::string> out;
    if (!c.handshake()) {
      return out;
    }
    const std::string auth = "Authorization: Bearer " + gh_ph_ + "\r\n";
    c.send(get(kApi, "/first", auth));
    out.push_back(c.response());
    // Idle past upstream_idle and a few sweeps (50 ms): the upstream connection goes.
    for (int i = 0; i < 100 && server.connections() == 1 && server.closed() == 0; ++i) {
      std::this_thread::sleep_for(20ms);
    }
    std::this_thread::sleep_for(100ms);
    closed_in_pause = server.closed();
    c.send(get(kApi, "/second", auth));
    out.push_back(c.response());
    c.send(get(kApi, "/third", auth));  // on the reconnected upstream, kept
    out.push_back(c.response());
    return out;
  });
  ASSERT_EQ(r.size(), 3u);
  for (const auto& resp : r) {
    EXPECT_EQ(resp.substr(0, 15), "HTTP/1.1 200 OK") << resp;
  }
  const auto seen = server.seen();
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& s : seen) {
    EXPECT_EQ(header_of(s.head, "authorization"), std::string("Bearer ") + kRealGh);
  }
  EXPECT_NE(seen[1].head.find("GET /second "), std::string::npos) << seen[1].head;
  // The first connection ended in the pause; /second and /third came on a second one.
  EXPECT_EQ(closed_in_pause, 1);
  EXPECT_EQ(server.connections(), 2);
  EXPECT_EQ(handler_->counters().upstream_parked, 1u);
  EXPECT_EQ(handler_->counters().upstream_reopened, 1u);
  ASSERT_TRUE(pump_until(
      *loop_, [&] { return handler_->connection_count() == 0; }, 5s));
  EXPECT_EQ(handler_->counters().upstream_resumed, 1u);  // the reconnect resumed the session
}

// A request in flight (the upstream thinking, nothing moving) keeps its connection however
// long it waits: only a flow between requests is parked.
TEST_F(ProxyParkTest, AnUpstreamThatIsAnsweringIsKept) {
  UniqueFd fd = open_flow(kApi);
  Upstream& server = *servers_[kApi];
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::string got;
    if (!c.handshake()) {
      return got;
    }
    c.send(get(kApi, "/sse"));
    Stream s = c.stream();
    if (s.read_until(got, "data: one\n\n") == std::string::npos) {
      return "first event not delivered: " + got;
    }
    std::this_thread::sleep_for(600ms);  // 3x upstream_idle with the response open
    server.open_sse_gate();
    s.read_until(got, "0\r\n\r\n");
    return got;
  });
  EXPECT_NE(r.find("data: two\n\n"), std::string::npos) << r;
  EXPECT_EQ(server.connections(), 1);
  EXPECT_EQ(handler_->counters().upstream_parked, 0u);
}

}  // namespace
}  // namespace agentbox::proxy
