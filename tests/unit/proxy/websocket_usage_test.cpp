// Token usage read from a model API's WebSocket (issue 17: "streamed (SSE, WebSocket) and not"):
// through the real ProxyHandler, an upgraded connection that used a credential is metered, and
// each upstream text message reporting usage becomes one model.usage event with its counts.
#include <gtest/gtest.h>

#include "agentbox/proxy/proxy_handler.hpp"
#include "proxy_test_util.hpp"

namespace agentbox::proxy {
namespace {

using namespace testing;  // NOLINT: the test rig

// A masked client text frame (RFC 6455 5.3) of under 126 bytes.
std::string client_text(const std::string& msg) {
  std::string f = {static_cast<char>(0x81), static_cast<char>(0x80 | msg.size())};
  f += "\x01\x02\x03\x04";
  for (size_t i = 0; i < msg.size(); ++i) {
    f += static_cast<char>(msg[i] ^ "\x01\x02\x03\x04"[i % 4]);
  }
  return f;
}

// The upstream echoes the box's frames, so what the box sends comes back as the server's
// messages: a Responses API `response.completed` event, as the API sends it over WebSocket.
TEST_F(ProxyHandlerTest, WebSocketMessagesReportingUsageAreMetered) {
  SessionBudget budget({}, {}, &audit_);
  options_.budget = &budget;
  make_handler();
  // Under 126 bytes: the rig's echo reads 7-bit lengths only.
  const std::string done =
      R"({"type":"response.completed","response":{"model":"gpt-ws","usage":{"input_tokens":50,)"
      R"("output_tokens":7}}})";
  const std::string delta = R"({"type":"response.output_text.delta","delta":"usage"})";
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::string got;
    if (!c.handshake()) {
      return got;
    }
    c.send(get(kApi, "/ws",
               "Authorization: Bearer " + gh_ph_ +
                   "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
                   "13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    const std::string head = c.response();
    if (head.rfind("HTTP/1.1 101", 0) != 0) {
      return "no 101: " + head;
    }
    got = c.buffered();
    c.send(client_text(delta) + client_text(done));
    Stream s = c.stream();
    // Each echo: a 2-byte header and the payload.
    if (!s.read_exact(got, (2 + delta.size()) + (2 + done.size()))) {
      return "short echo: " + got;
    }
    return got.substr(got.size() - done.size());
  });
  EXPECT_EQ(r, done);
  const std::string log = audit();
  EXPECT_NE(log.find(R"("type":"model.usage")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("model":"gpt-ws","input_tokens":50,"output_tokens":7,"cached_tokens":0)"),
            std::string::npos)
      << log;
  size_t n = 0;
  for (size_t at = log.find("model.usage"); at != std::string::npos;
       at = log.find("model.usage", at + 1)) {
    ++n;
  }
  EXPECT_EQ(n, 1u) << "the delta reports no usage: " << log;
}

}  // namespace
}  // namespace agentbox::proxy
