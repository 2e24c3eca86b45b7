// Credential options end to end, through the real `agentbox run` (as root and as the
// unprivileged user): `format` adds a header the box did not send, `body = true` swaps
// placeholders inside request bodies (form, JSON, chunked), default-off bodies go unchanged, and
// a cmd: credential is re-read after its ttl (on the proxy's worker, off the event loop).
#include <algorithm>

#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kRealFmt = "ghp_RealFormatTokenAAA0123456789abcdefWXYZ";
const std::string kRealBody = "ghp_RealBodyTokenBBBBB0123456789abcdefWXYZ";
const std::string kRealNobody = "ghp_RealNobodyTokenCCC0123456789abcdefWXYZ";
const std::string kCmdV1 = "ghp_CmdValueOneDDDDDDD0123456789abcdefWXYZ";
const std::string kCmdV2 = "ghp_CmdValueTwoEEEEEEE0123456789abcdefWXYZ";

class ProxyCredTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override {
    return {"api.example.test", "body.example.test", "plain.example.test", "cmd.example.test"};
  }
  std::vector<std::string> secrets() const override {
    return {kRealFmt, kRealBody, kRealNobody, kCmdV1, kCmdV2};
  }
  std::map<std::string, std::string> env() const override {
    return {{"REAL_FMT", kRealFmt}, {"REAL_BODY", kRealBody}, {"REAL_NOBODY", kRealNobody}};
  }
  void prepare() override {
    // The command prints one value the first time and another after (a rotated token).
    state_ = w_.root + "/cmdstate";
    ASSERT_EQ(::mkdir(state_.c_str(), 0755), 0);
    chown_tree(state_, w_.as.uid, w_.as.gid);
  }
  std::string config() const override {
    return fmt::format(
        "[network]\n"
        "allow = [\"api.example.test\", \"body.example.test\", \"plain.example.test\",\n"
        "         \"cmd.example.test\"]\n"
        "[credentials.fmt]\n"
        "env = \"FMT_TOKEN\"\n"
        "from = \"env:REAL_FMT\"\n"
        "hosts = [\"api.example.test\"]\n"
        "inject = \"header:Authorization\"\n"
        "format = \"Bearer {{}}\"\n"
        "[credentials.bodycred]\n"
        "env = \"BODY_TOKEN\"\n"
        "from = \"env:REAL_BODY\"\n"
        "hosts = [\"body.example.test\"]\n"
        "body = true\n"
        "[[network.rule]]\n"
        "host = \"body.example.test\"\n"
        "methods = [\"POST\"]\n"
        "paths = [\"/record-body\"]\n"
        "[credentials.nobody]\n"
        "env = \"NOBODY_TOKEN\"\n"
        "from = \"env:REAL_NOBODY\"\n"
        "hosts = [\"plain.example.test\"]\n"
        "[credentials.cmdcred]\n"
        "env = \"CMD_TOKEN\"\n"
        "from = \"cmd:if [ -e {0}/once ]; then echo {2}; else touch {0}/once; echo {1}; fi\"\n"
        "hosts = [\"cmd.example.test\"]\n"
        "ttl = \"1s\"\n",
        state_, kCmdV1, kCmdV2);
  }
  std::string state_;
};

TEST_P(ProxyCredTest, FormatAddsTheHeaderSwapsThePlaceholderAndLeavesTheBoxsOwnValue) {
  Output r =
      box("echo \"fmt=$FMT_TOKEN\"; "
          "curl -sS https://api.example.test/echo/added; "
          "curl -sS https://api.example.test/echo/swapped -H \"Authorization: Bearer $FMT_TOKEN\"; "
          "curl -sS https://api.example.test/echo/own -H 'Authorization: token mine'");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string ph = r.line_starting("fmt=").substr(4);
  ASSERT_EQ(ph.size(), kRealFmt.size()) << "the placeholder variable still exists: " << r.out;
  EXPECT_NE(ph, kRealFmt);
  const std::string s = seen();
  EXPECT_NE(s.find("GET /echo/added Bearer " + kRealFmt), std::string::npos) << s;
  EXPECT_NE(s.find("GET /echo/swapped Bearer " + kRealFmt), std::string::npos) << s;
  EXPECT_NE(s.find("GET /echo/own token mine"), std::string::npos) << s;
  // The added secret echoed back reaches the box as the placeholder.
  EXPECT_TRUE(r.has_line("you sent: Bearer " + ph)) << r.out;
  EXPECT_TRUE(r.has_line("you sent: token mine")) << r.out;
  const std::string log = audit();
  EXPECT_NE(
      log.find(
          R"("type":"credential.use","credential":"fmt","host":"api.example.test","how":"added")"),
      std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("type":"credential.skip","credential":"fmt")"), std::string::npos) << log;
}

TEST_P(ProxyCredTest, BodyPlaceholdersAreSwappedOnlyWhereOptedIn) {
  Output r =
      box("echo \"nobody=$NOBODY_TOKEN\"; "
          "curl -sS --data \"token=$BODY_TOKEN&x=1\" https://body.example.test/record-body; "
          // Chunked, with the placeholder split across chunks.
          "python3 -c 'import http.client, os\n"
          "ph = os.environ[\"BODY_TOKEN\"].encode()\n"
          "def chunks():\n"
          "    yield b\"{\\\"token\\\":\\\"\" + ph[:5]\n"
          "    yield ph[5:17]\n"
          "    yield ph[17:] + b\"\\\",\\\"n\\\":1}\"\n"
          "c = http.client.HTTPSConnection(\"body.example.test\")\n"
          "c.request(\"POST\", \"/record-body\", body=chunks(), encode_chunked=True)\n"
          "print(\"chunked\", c.getresponse().status)'; "
          // No `body = true`: forwarded unchanged (worthless to the scoped host).
          "curl -sS --data \"token=$NOBODY_TOKEN\" https://plain.example.test/record-body");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("chunked 200")) << r.out << r.err;
  const std::string nobody = r.line_starting("nobody=").substr(7);
  ASSERT_EQ(nobody.size(), kRealNobody.size()) << r.out;
  const std::string s = seen();
  EXPECT_NE(s.find("BODY token=" + kRealBody + "&x=1"), std::string::npos) << s;
  EXPECT_NE(s.find("BODY {\"token\":\"" + kRealBody + "\",\"n\":1}"), std::string::npos) << s;
  EXPECT_NE(s.find("BODY token=" + nobody), std::string::npos) << s;
  EXPECT_EQ(s.find(kRealNobody), std::string::npos) << s;
  const std::string log = audit();
  EXPECT_NE(log.find(R"("credential":"bodycred","host":"body.example.test","how":"body")"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("credentials":["bodycred"])"), std::string::npos) << log;
}

TEST_P(ProxyCredTest, CmdCredentialIsReReadAfterItsTtl) {
  Output r =
      box("curl -sS https://cmd.example.test/echo/first -H \"Authorization: token $CMD_TOKEN\"; "
          "sleep 1.5; "
          "curl -sS https://cmd.example.test/echo/second -H \"Authorization: token $CMD_TOKEN\"");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string s = seen();
  EXPECT_NE(s.find("GET /echo/first token " + kCmdV1), std::string::npos) << s;
  EXPECT_NE(s.find("GET /echo/second token " + kCmdV2), std::string::npos) << s;
}

// An idle intercepted flow gives up its upstream connection (after 10 s with nothing in flight:
// ProxyOptions::upstream_idle) and the next request on the same box connection reconnects, the
// credential swapped as before. Oracle: the upstream's own logs (TCP connections accepted, the
// requests and the Authorization each carried); the box reports its connection's local port.
TEST_P(ProxyCredTest, AnIdleFlowsUpstreamIsReconnectedForItsNextRequest) {
  Output r = box(R"(python3 - <<'EOF'
import http.client, os, time
c = http.client.HTTPSConnection("api.example.test", timeout=30)
ports = []
for i, pause in enumerate((0, 13, 0)):
    time.sleep(pause)
    c.request("GET", "/echo/idle%d" % i,
              headers={"Authorization": "Bearer " + os.environ["FMT_TOKEN"]})
    resp = c.getresponse()
    resp.read()
    ports.append(c.sock.getsockname()[1])
    print("status", i, resp.status, flush=True)
print("box connections", len(set(ports)))
EOF)",
                 90000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("status 1 200")) << r.out;
  EXPECT_TRUE(r.has_line("status 2 200")) << r.out;
  EXPECT_TRUE(r.has_line("box connections 1")) << r.out;  // one box connection throughout
  const std::string s = seen();
  for (const char* path : {"/echo/idle0", "/echo/idle1", "/echo/idle2"}) {
    EXPECT_NE(s.find(fmt::format("GET {} Bearer {}", path, kRealFmt)), std::string::npos) << s;
  }
  // Two upstream connections: the first closed in the pause, the second for idle1 and idle2.
  const std::string accepted = slurp(up_ + "/accepted.log");
  EXPECT_EQ(std::count(accepted.begin(), accepted.end(), '\n'), 2) << accepted;
}

INSTANTIATE_TEST_SUITE_P(As, ProxyCredTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
