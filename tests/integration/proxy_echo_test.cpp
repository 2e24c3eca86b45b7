// A hostile scoped upstream, through the real `agentbox run` (as root and as the unprivileged
// user), with python in the box (data/hostile_client.py) against data/hostile.py: the secret
// echoed in every form and alignment, gzipped against a forced identity, stored and read back
// with Range, an h2c upgrade, and WebSocket frames both ways. Judged outside the box: no real
// secret (nor the middle of one, which is what an unaligned base64 form carries) in the output,
// in the upstream's log where the box must not reach, or in the session's state.
#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kRealEcho = "ghp_RealEchoTokenAAAAA0123456789abcdefWXYZ";
const std::string kRealStore = "ghp_RealStoreTokenBBBB0123456789abcdefWXYZ";
const std::string kRealOther = "ghp_RealOtherTokenCCCC0123456789abcdefWXYZ";

class ProxyEchoTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override {
    return {"echo.example.test", "store.example.test", "other.example.test"};
  }
  std::vector<std::string> secrets() const override { return {kRealEcho, kRealStore, kRealOther}; }
  std::map<std::string, std::string> env() const override {
    return {{"REAL_ECHO", kRealEcho}, {"REAL_STORE", kRealStore}, {"REAL_OTHER", kRealOther}};
  }
  void prepare() override {
    const std::string client = w_.ws + "/hostile_client.py";
    ASSERT_EQ(sh("cp " AGENTBOX_TEST_DATA "/hostile_client.py " + client), 0);
    chown_tree(client, w_.as.uid, w_.as.gid);
  }
  std::string config() const override {
    return "[network]\n"
           "allow = [\"echo.example.test\", \"store.example.test\", \"other.example.test\"]\n"
           "[[network.rule]]\n"
           "host = \"store.example.test\"\n"
           "methods = [\"GET\", \"POST\"]\n"
           "paths = [\"/store\"]\n"
           "[credentials.echo]\n"
           "env = \"ECHO_TOKEN\"\n"
           "from = \"env:REAL_ECHO\"\n"
           "hosts = [\"echo.example.test\"]\n"
           "inject = \"header:Authorization\"\n"
           "[credentials.store]\n"
           "env = \"STORE_TOKEN\"\n"
           "from = \"env:REAL_STORE\"\n"
           "hosts = [\"store.example.test\"]\n"
           "body = true\n"
           "[credentials.other]\n"
           "env = \"OTHER_TOKEN\"\n"
           "from = \"env:REAL_OTHER\"\n"
           "hosts = [\"other.example.test\"]\n";
  }
  Output client(const std::string& mode) { return box("python3 hostile_client.py " + mode); }
  // No real secret, whole or its middle (an unaligned base64 form's share), in `text`.
  static void no_secret(const std::string& text) {
    for (const auto& s : {kRealEcho, kRealStore, kRealOther}) {
      EXPECT_EQ(text.find(s.substr(1, s.size() - 2)), std::string::npos) << text;
    }
  }
};

const char* const kForms[] = {
    "raw",           "b64-std-0-pad",   "b64-std-1-pad",   "b64-std-2-pad", "b64-std-3-nopad",
    "b64-std-4-pad", "b64-std-5-nopad", "b64-url-0-nopad", "b64-url-1-pad", "b64-url-2-nopad",
    "basic",         "hex-lower",       "hex-upper",       "pct-all-upper", "pct-all-lower",
    "pct-mixed",     "pct-quote",       "json-u-all",      "json-u-upper",  "json-u-mixed",
};

TEST_P(ProxyEchoTest, EveryFormAndAlignmentOfAnEchoComesBackAsThePlaceholder) {
  Output r = client("forms");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("status 200")) << r.out;
  for (const char* form : kForms) {
    EXPECT_TRUE(r.has_line(std::string("placeholder ") + form + " yes")) << form << "\n" << r.out;
  }
  no_secret(r.out);
}

TEST_P(ProxyEchoTest, GzipIsNeverAskedForAndACodedAnswerIsRefused) {
  Output r = client("gzip");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  // A request with no credential in it still asks for identity: the upstream may echo what
  // another request carried.
  EXPECT_TRUE(r.has_line("honour 200 identity identity")) << r.out;
  EXPECT_TRUE(r.has_line("placeholder hex-lower yes")) << r.out;
  EXPECT_TRUE(r.has_line("forced 502")) << r.out;
  // A coding named by the token itself: refused, and named in the refusal as the placeholder
  // (the refusal goes to the box and the audit log, which TearDown searches).
  EXPECT_NE(r.out.find("coding 502 agentbox: request blocked: response from echo.example.test "
                       "refused: Content-Encoding `ghp_"),
            std::string::npos)
      << r.out;
  no_secret(r.out);
  const std::string a = audit();
  EXPECT_NE(a.find("Content-Encoding `gzip`"), std::string::npos) << a;
}

TEST_P(ProxyEchoTest, AStoredSecretIsNotReadBackInPieces) {
  Output r = client("range");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("store 200")) << r.out;
  EXPECT_NE(seen().find("POST /store"), std::string::npos);
  EXPECT_NE(r.out.find("whole 200 v=ghp_"), std::string::npos) << r.out;  // scrubbed whole
  EXPECT_TRUE(r.has_line("range 0 403")) << r.out;
  EXPECT_TRUE(r.has_line("range 20 403")) << r.out;
  EXPECT_TRUE(r.has_line("if-range 403")) << r.out;
  EXPECT_TRUE(r.has_line("partial 502")) << r.out;
  EXPECT_TRUE(r.has_line("joined ")) << r.out;
  no_secret(r.out);
}

TEST_P(ProxyEchoTest, AnH2cUpgradeIsRefusedAndNoTunnelOpens) {
  Output r = client("h2c");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("h2c HTTP/1.1 403"), std::string::npos) << r.out;
  const std::string s = seen();
  EXPECT_EQ(s.find("GET /h2c"), std::string::npos) << s;
  EXPECT_EQ(s.find("TUNNEL"), std::string::npos) << s;
}

TEST_P(ProxyEchoTest, WebSocketFramesAreReadBothWays) {
  Output r = client("ws");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("ws HTTP/1.1 101 Switching Protocols")) << r.out;
  // The upstream's echo of the injected token, split across two fragments and two writes.
  EXPECT_NE(r.out.find("ws-auth ghp_"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" yes\n"), std::string::npos) << r.out;
  EXPECT_TRUE(r.has_line("ws-echo harmless")) << r.out;
  // A placeholder scoped elsewhere, in two fragments: the connection ends before its second
  // half goes up (the first half alone may, and may be echoed: it is worthless).
  EXPECT_TRUE(r.has_line("ws-offscope closed")) << r.out;
  EXPECT_TRUE(r.has_line("ws-unmasked closed")) << r.out;
  const std::string other = r.line_starting("other=").substr(6);
  ASSERT_EQ(other.size(), kRealOther.size()) << r.out;
  const std::string s = seen();
  EXPECT_EQ(s.find(other.substr(other.size() / 2)), std::string::npos) << s;
  EXPECT_EQ(s.find("unmasked-hello"), std::string::npos) << s;
  EXPECT_EQ(s.find("EXT permessage-deflate"), std::string::npos) << s;
  EXPECT_NE(s.find("EXT none"), std::string::npos) << s;
  const std::string a = audit();
  EXPECT_NE(a.find(R"("credential":"other","host":"echo.example.test")"), std::string::npos) << a;
  no_secret(r.out);
}

INSTANTIATE_TEST_SUITE_P(As, ProxyEchoTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
