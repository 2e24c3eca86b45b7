// Body injection through the handler (real TLS both sides, real sockets): a `body = true`
// credential's placeholder is swapped inside Content-Length and chunked request bodies, also
// when the box sends it split across writes 100 ms apart (separate reads in the proxy) and
// across chunks; lengths hold; the audit names the credential; without `body` the placeholder
// in a body goes on unchanged; a tail held back mid-placeholder is released after the hold.
#include <gtest/gtest.h>

#include <thread>

#include "agentbox/proxy/proxy_handler.hpp"
#include "proxy_test_util.hpp"

namespace agentbox::proxy {
namespace {

using namespace testing;  // NOLINT: the test rig

constexpr const char* kRealBody = "xoxb-1111111111-REALBODYSECRETREALBODY0123";

class BodyInjectTest : public ProxyHandlerTest {
 protected:
  void SetUp() override {
    ProxyHandlerTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    handler_.reset();
    std::map<std::string, std::string> env = {{"REAL_GH", kRealGh}, {"REAL_BODY", kRealBody}};
    auto creds = cred::CredentialSet::load(
        {{.name = "github",
          .env = "GITHUB_TOKEN",
          .from = policy::SourceSpec::env("REAL_GH"),
          .hosts = {kApi},
          .inject = agentbox::policy::InjectSpec::header("Authorization")},
         {.name = "slack",
          .env = "SLACK_TOKEN",
          .from = policy::SourceSpec::env("REAL_BODY"),
          .hosts = {kApi},
          .inject = agentbox::policy::InjectSpec::header("X-Unused"),
          .body = true}},
        cred::fake_env(env), &audit_);
    ASSERT_TRUE(creds.has_value()) << creds.error().message();
    creds_.emplace(std::move(*creds));
    gh_ph_ = *creds_->placeholder("github");
    body_ph_ = *creds_->placeholder("slack");
    make_handler();
  }
  // Sends `head` then each piece with a pause (separate reads in the proxy); the response.
  std::string upload(const std::string& head, const std::vector<std::string>& pieces) {
    UniqueFd fd = open_flow(kApi);
    return while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
      BoxClient c(std::move(fd), kApi, session_ca_file_);
      if (!c.handshake()) {
        return "handshake failed: " + c.error();
      }
      c.send(head);
      for (const auto& p : pieces) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        c.send(p);
      }
      return c.response();
    });
  }
  std::string body_ph_;
};

TEST_F(BodyInjectTest, ContentLengthBodySplitAcrossReadsIsSwapped) {
  const std::string body = "{\"token\":\"" + body_ph_ + "\",\"gh\":\"" + gh_ph_ + "\"}";
  const std::string r = upload(
      "POST /upload HTTP/1.1\r\nHost: api.example.test\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n",
      {body.substr(0, 14), body.substr(14, 9), body.substr(23)});
  EXPECT_NE(r.find("200"), std::string::npos) << r;
  auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 1u);
  // The opted-in credential is swapped; github (no `body`) goes on as the placeholder.
  EXPECT_EQ(seen[0].body,
            "{\"token\":\"" + std::string(kRealBody) + "\",\"gh\":\"" + gh_ph_ + "\"}");
  EXPECT_EQ(header_of(seen[0].head, "content-length"), std::to_string(body.size()));
  EXPECT_NE(audit().find(R"("credential":"slack","host":"api.example.test","how":"body")"),
            std::string::npos)
      << audit();
  EXPECT_NE(audit().find(R"("credentials":["slack"])"), std::string::npos) << audit();
  EXPECT_EQ(audit().find(kRealBody), std::string::npos);
}

TEST_F(BodyInjectTest, ChunkedBodySplitAcrossChunksIsSwappedAndRechunked) {
  const std::string a = "token=" + body_ph_.substr(0, 7);
  const std::string b = body_ph_.substr(7, 10);
  const std::string c = body_ph_.substr(17) + "&x=1";
  auto chunk = [](const std::string& s) {
    char size[16];
    snprintf(size, sizeof size, "%zx", s.size());
    return std::string(size) + "\r\n" + s + "\r\n";
  };
  const std::string r = upload(
      "POST /upload HTTP/1.1\r\nHost: api.example.test\r\nTransfer-Encoding: chunked\r\n\r\n",
      {chunk(a), chunk(b), chunk(c) + "0\r\n\r\n"});
  EXPECT_NE(r.find("200"), std::string::npos) << r;
  auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, "token=" + std::string(kRealBody) + "&x=1");
  EXPECT_EQ(header_of(seen[0].head, "transfer-encoding"), "chunked");
}

// A streamed upload that pauses right after the first bytes of a placeholder (a client waiting
// on the server before it sends more): the held tail must reach the upstream after the hold,
// not wait for bytes that may never come.
TEST_F(BodyInjectTest, HeldBodyTailIsReleasedWhenTheClientPauses) {
  auto chunk = [](const std::string& s) {
    char size[16];
    snprintf(size, sizeof size, "%zx", s.size());
    return std::string(size) + "\r\n" + s + "\r\n";
  };
  const std::string first = "token=" + body_ph_.substr(0, 7);
  Upstream& server = *servers_[kApi];
  UniqueFd fd = open_flow(kApi);
  const std::string r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    if (!c.handshake()) {
      return "handshake failed: " + c.error();
    }
    c.send("POST /upload HTTP/1.1\r\nHost: api.example.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
           chunk(first));
    bool arrived = false;
    for (int i = 0; i < 250 && !arrived; ++i) {  // 5 s at most; the hold is 50 ms
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      arrived = server.partial_body() == first;
    }
    if (!arrived) {
      return "held until the body went on: upstream saw \"" + server.partial_body() + "\"";
    }
    c.send(chunk("&x=1") + "0\r\n\r\n");
    return c.response();
  });
  EXPECT_NE(r.find("200"), std::string::npos) << r;
  auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, first + "&x=1");
}

TEST_F(BodyInjectTest, OffScopeBodyPlaceholderIsStillBlocked) {
  // The docs host is intercepted (HTTP rules) but not in the credential's scope.
  const std::string body = "token=" + body_ph_;
  UniqueFd fd = open_flow(kDocs);
  const std::string r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kDocs, session_ca_file_);
    if (!c.handshake()) {
      return "handshake failed: " + c.error();
    }
    c.send("POST /upload HTTP/1.1\r\nHost: " + std::string(kDocs) +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    return c.response();
  });
  EXPECT_NE(r.find("403"), std::string::npos) << r;
  EXPECT_NE(r.find("credential slack sent to"), std::string::npos) << r;
  // The docs host saw nothing of it: no request, so neither the placeholder nor the real secret.
  // (The body the box sent does hold the placeholder: the search below could find it.)
  ASSERT_NE(body.find(body_ph_), std::string::npos);
  const auto seen = servers_[kDocs]->seen();
  EXPECT_TRUE(seen.empty()) << seen.size() << " request(s) reached " << kDocs;
  for (const auto& req : seen) {
    EXPECT_EQ((req.head + req.body).find(kRealBody), std::string::npos) << req.head << req.body;
  }
}

}  // namespace
}  // namespace agentbox::proxy
