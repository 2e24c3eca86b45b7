// HTTP/2 through interception (issue 15 item 6), through the real `agentbox run` as root and as
// the unprivileged user: curl --http2, node's http2 client and a python grpcio client in the box
// against node's http2 server (data/h2_upstream.js) and a grpcio server (data/grpc_upstream.py)
// outside, both on loopback with the upstream test CA, reached by name with --connect-to.
// Judged outside the box: the upstream's log shows the real token, the box's output only the
// placeholder (headers, DATA, trailers, gRPC metadata), refused streams never reach the upstream,
// and one audit line per stream.
#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kRealApi = "ghp_RealH2TokenAAAAA0123456789abcdefWXYZ";
const std::string kRealOther = "ghp_RealH2OtherBBBBB0123456789abcdefWXYZ";

bool have(const std::string& tool) {
  return sh("command -v " + tool + " >/dev/null 2>&1") == 0;
}

bool have_grpc() {
  return sh("/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1") == 0;
}

class ProxyH2Test : public WorldTest {
 protected:
  void SetUp() override {
    if (!enter_world()) {
      return;
    }
    if (!have("node")) {
      skip("node is not installed (Debian package nodejs): it is the h2 upstream");
      return;
    }
    up_ = w_.root + "/upstream";
    ASSERT_EQ(::mkdir(up_.c_str(), 0755), 0);
    ASSERT_TRUE(make_upstream_certs(up_, {"api.example.test"}));
    h2_port_ = free_port();
    ASSERT_TRUE(start_server(
        {"/usr/bin/node", AGENTBOX_TEST_DATA "/h2_upstream.js", up_, std::to_string(h2_port_)}, up_,
        h2_pid_))
        << "the node upstream did not start";
    for (const char* f : {"grpc_client.py"}) {
      ASSERT_EQ(sh(fmt::format("cp {}/{} {}/", AGENTBOX_TEST_DATA, f, w_.ws)), 0);
    }
    write_file(w_.ws + "/node_client.js", kNodeClient);
    chown_tree(w_.ws, w_.as.uid, w_.as.gid);
    cfg_ = w_.root + "/cfg";
    ASSERT_EQ(::mkdir(cfg_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((cfg_ + "/agentbox").c_str(), 0755), 0);
    write_file(cfg_ + "/agentbox/config.toml", kConfig);
    chown_tree(cfg_, w_.as.uid, w_.as.gid);
  }
  void TearDown() override {
    for (pid_t p : {h2_pid_, grpc_pid_}) {
      if (p > 0) {
        ::kill(p, SIGKILL);
        ::waitpid(p, nullptr, 0);
      }
    }
    if (made_) {
      if (!all_audit_logs(w_).empty()) {
        expect_tree_lacks(w_.state, {kRealApi, kRealOther}, R"("type":"session.start")");
      }
      destroy_world(w_);
    }
  }
  // `agentbox run` with `sh -c script` inside, the name routed to `port`.
  // `flags` go after the fixture's own; `quiet` false keeps the exit summary on stderr.
  Output box(const std::string& script, uint16_t port, const Args& flags = {}, bool quiet = true) {
    RunOptions o;
    o.env = {{"REAL_API", kRealApi}, {"REAL_OTHER", kRealOther}, {"XDG_CONFIG_HOME", cfg_}};
    o.timeout_ms = 90000;
    Args a = {"run", "--upstream-ca", up_ + "/ca.pem", "--connect-to",
              fmt::format("api.example.test:443:127.0.0.1:{}", port)};
    if (quiet) {
      a.push_back("-q");
    }
    a.insert(a.end(), flags.begin(), flags.end());
    a.insert(a.end(), {"--", "sh", "-c", script});
    Output r = run(w_, a, o);
    for (const auto& s : {kRealApi, kRealOther}) {
      EXPECT_EQ(r.out.find(s), std::string::npos) << r.out;
      EXPECT_EQ(r.err.find(s), std::string::npos) << r.err;
    }
    return r;
  }
  Output h2(const std::string& script) { return box(script, h2_port_); }
  std::string seen() { return slurp(up_ + "/seen.log"); }

  static constexpr const char* kConfig =
      "[network]\n"
      "allow = [\"api.example.test\", \"other.example.test\"]\n"
      "[[network.rule]]\n"
      "host = \"api.example.test\"\n"
      "methods = [\"GET\", \"POST\"]\n"
      "paths = [\"/echo/**\", \"/upload\", \"/trailers\", \"/agentbox.Echo/**\", "
      "\"/v1/messages\"]\n"
      "[credentials.api]\n"
      "env = \"API_TOKEN\"\n"
      "from = \"env:REAL_API\"\n"
      "hosts = [\"api.example.test\"]\n"
      "[credentials.other]\n"
      "env = \"OTHER_TOKEN\"\n"
      "from = \"env:REAL_OTHER\"\n"
      "hosts = [\"other.example.test\"]\n"
      "[pricing.\"mock-claude\"]\ninput = 3.0\noutput = 15.0\ncached = 0.3\n";
  static constexpr const char* kNodeClient =
      "const http2 = require('http2');\n"
      "const c = http2.connect('https://api.example.test');\n"
      "c.on('error', (e) => { console.log('error', e.message); process.exit(1); });\n"
      "const req = c.request({':path': '/echo/node', authorization: 'Bearer ' + "
      "process.env.API_TOKEN});\n"
      "let body = '';\n"
      "req.on('response', (h) => console.log('status', h[':status'], 'x-echo', h['x-echo']));\n"
      "req.on('data', (d) => body += d);\n"
      "req.on('end', () => { console.log('body', body.trim()); c.close(); });\n";

  std::string up_;
  std::string cfg_;
  uint16_t h2_port_ = 0;
  pid_t h2_pid_ = -1;
  pid_t grpc_pid_ = -1;
};

// The placeholder the box holds (printed by the script as `token=...`).
std::string token_of(const Output& r) {
  const std::string t = r.line_starting("token=");
  return t.size() > 6 ? t.substr(6) : std::string();
}

TEST_P(ProxyH2Test, CurlHttp2GetsTheRealTokenInjectedAndTheEchoScrubbed) {
  Output r =
      h2("echo \"token=$API_TOKEN\"; "
         "curl -sS --http2 -v https://api.example.test/echo/a -H \"Authorization: Bearer "
         "$API_TOKEN\" 2>&1 | grep -E '^< HTTP/|^< x-echo|^you sent|ALPN'; "
         "curl -sS --http2 -v https://api.example.test/trailers -H \"Authorization: Bearer "
         "$API_TOKEN\" 2>&1 | grep -E '^< x-echo-trailer|^body before'");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string token = token_of(r);
  ASSERT_EQ(token.size(), kRealApi.size()) << r.out;
  EXPECT_TRUE(r.has_line("* ALPN: server accepted h2")) << r.out;
  EXPECT_TRUE(r.has_line("< HTTP/2 200 ")) << r.out;
  EXPECT_TRUE(r.has_line("< x-echo: Bearer " + token)) << r.out;          // HPACK header scrubbed
  EXPECT_TRUE(r.has_line("you sent: Bearer " + token)) << r.out;          // DATA scrubbed
  EXPECT_TRUE(r.has_line("< x-echo-trailer: Bearer " + token)) << r.out;  // trailer scrubbed
  EXPECT_TRUE(r.has_line("body before trailers")) << r.out;
  EXPECT_NE(seen().find("h2 GET /echo/a Bearer " + kRealApi), std::string::npos) << seen();
  EXPECT_NE(seen().find("h2 GET /trailers Bearer " + kRealApi), std::string::npos) << seen();
}

TEST_P(ProxyH2Test, ARuleDenyingAPathRefusesThatStreamOnly) {
  // Three requests on one connection: the denied one in the middle; the others go on.
  Output r =
      h2("curl -sS --http2 -o /dev/null -w '%{http_version} %{http_code} %{num_connects}\\n' "
         "https://api.example.test/echo/1 https://api.example.test/secret "
         "https://api.example.test/echo/2; "
         "curl -sS --http2 https://api.example.test/secret");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("2 200 1")) << r.out;
  EXPECT_TRUE(r.has_line("2 403 0")) << r.out;
  EXPECT_TRUE(r.has_line("2 200 0")) << r.out;
  EXPECT_NE(r.out.find("agentbox: GET https://api.example.test/secret denied by rule"),
            std::string::npos)
      << r.out;
  const std::string s = seen();
  EXPECT_NE(s.find("h2 GET /echo/1"), std::string::npos) << s;
  EXPECT_NE(s.find("h2 GET /echo/2"), std::string::npos) << s;
  EXPECT_EQ(s.find("/secret"), std::string::npos) << s;
  const std::string audit = all_audit_logs(w_);
  EXPECT_NE(audit.find(R"("path":"/secret")"), std::string::npos) << audit;
  EXPECT_NE(audit.find(R"("decision":"denied")"), std::string::npos) << audit;
  EXPECT_NE(audit.find(R"("path":"/echo/2")"), std::string::npos) << audit;
}

TEST_P(ProxyH2Test, OffScopePlaceholderInAHeaderOrInDataIsRefused) {
  Output r =
      h2("curl -sS --http2 -w ' %{http_version} %{http_code}\\n' https://api.example.test/echo/x "
         "-H \"X-Other: $OTHER_TOKEN\"; "
         "curl -sS --http2 -w ' %{http_version} %{http_code}\\n' https://api.example.test/upload "
         "--data-binary \"x=$OTHER_TOKEN\"; "
         // The placeholder split across two DATA frames (a 20000-byte body: frames of 16 KiB).
         "head -c 16380 /dev/zero | tr '\\0' a > big; printf '%s' \"$OTHER_TOKEN\" >> big; "
         "curl -sS --http2 -w ' %{http_version} %{http_code}\\n' https://api.example.test/upload "
         "--data-binary @big; echo \"other=$OTHER_TOKEN\"");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string line = "agentbox: request blocked: credential other sent to api.example.test";
  EXPECT_TRUE(r.has_line(line)) << r.out;
  EXPECT_TRUE(r.has_line(" 2 403")) << r.out;
  size_t refused = 0;
  for (size_t at = r.out.find(line); at != std::string::npos; at = r.out.find(line, at + 1)) {
    ++refused;
  }
  EXPECT_EQ(refused, 3U) << r.out;
  const std::string other = r.line_starting("other=").substr(6);
  ASSERT_FALSE(other.empty()) << r.out;
  EXPECT_EQ(seen().find(other), std::string::npos) << seen();
  EXPECT_EQ(seen().find("/echo/x"), std::string::npos) << seen();
}

TEST_P(ProxyH2Test, NodeHttp2ClientWorks) {
  Output r = h2("echo \"token=$API_TOKEN\"; node node_client.js");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string token = token_of(r);
  ASSERT_EQ(token.size(), kRealApi.size()) << r.out;
  EXPECT_TRUE(r.has_line("status 200 x-echo Bearer " + token)) << r.out;
  EXPECT_TRUE(r.has_line("body you sent: Bearer " + token)) << r.out;
  EXPECT_NE(seen().find("h2 GET /echo/node Bearer " + kRealApi), std::string::npos) << seen();
}

TEST_P(ProxyH2Test, GrpcCallGetsTheRealTokenAndAnOffScopeOneIsDenied) {
  if (!have_grpc()) {
    skip("python3-grpcio is not installed (Debian package python3-grpcio)");
    return;
  }
  const uint16_t port = free_port();
  ASSERT_TRUE(start_server(
      {"/usr/bin/python3", AGENTBOX_TEST_DATA "/grpc_upstream.py", up_, std::to_string(port)}, up_,
      grpc_pid_))
      << "the grpc upstream did not start";
  Output r =
      box("echo \"token=$API_TOKEN\"; export GRPC_DNS_RESOLVER=native; "
          "/usr/bin/python3 grpc_client.py api.example.test \"hello $API_TOKEN\"; "
          "/usr/bin/python3 grpc_client.py api.example.test \"bad $OTHER_TOKEN\"",
          port);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string token = token_of(r);
  ASSERT_EQ(token.size(), kRealApi.size()) << r.out;
  EXPECT_TRUE(r.has_line("status OK")) << r.out;
  EXPECT_TRUE(r.has_line("reply you sent: Bearer " + token + " body: hello " + token)) << r.out;
  EXPECT_TRUE(r.has_line("initial x-echo Bearer " + token)) << r.out;
  EXPECT_TRUE(r.has_line("trailing x-echo-trailer Bearer " + token)) << r.out;
  EXPECT_TRUE(
      r.has_line("status PERMISSION_DENIED agentbox: request blocked: credential other "
                 "sent to api.example.test"))
      << r.out;
  EXPECT_NE(seen().find("grpc /agentbox.Echo/Echo Bearer " + kRealApi + " hello " + token),
            std::string::npos)
      << seen();
  EXPECT_EQ(seen().find("bad "), std::string::npos) << seen();
}

// Model usage read from h2 responses (h2_stream.cpp meters them), JSON and SSE, through curl
// --http2: the audit log and the exit summary have the mock's exact counts, and the spend cap
// refuses the next request on its own h2 stream with 429 (it never reaches the upstream).
TEST_P(ProxyH2Test, ModelUsageIsReadFromH2ResponsesAndTheSpendCapRefusesTheNext) {
  const std::string call =
      "c=$(curl -sS --http2 -o body -w '%{http_version} %{http_code}' -H \"Authorization: Bearer "
      "$API_TOKEN\" -H 'content-type: application/json' -d '{\"model\":\"mock-claude\","
      "\"stream\":STREAM}' https://api.example.test/v1/messages); echo \"code=$c\"; "
      "[ \"$c\" = '2 200' ] || echo \"refused=$(cat body)\"; ";
  auto with = [&](const char* stream) {
    std::string s = call;
    s.replace(s.find("STREAM"), 6, stream);
    return s;
  };
  // $0.00771 a response ((1050 * 3 + 200 * 0.3 + 300 * 15) / 1e6): two pass a $0.01 cap.
  Output r = box(with("false") + with("true") +
                     "tail -c 60 body | grep -q message_stop && echo "
                     "sse-intact; " +
                     with("false"),
                 h2_port_, {"--budget-spend", "0.01"}, /*quiet=*/false);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=2 200\n"), 2u) << r.out;
  EXPECT_TRUE(r.has_line("sse-intact")) << r.out;
  EXPECT_NE(r.out.find("code=2 429\nrefused=agentbox: request blocked: session budget spend = "
                       "$0.0100 reached ($0.0154 spent on model usage)"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(count_of(seen(), "h2 POST /v1/messages Bearer " + kRealApi), 2u) << seen();
  const std::string audit = all_audit_logs(w_);
  EXPECT_EQ(count_of(audit, R"("model":"mock-claude","input_tokens":1250,"output_tokens":300,)"
                            R"("cached_tokens":200)"),
            2u)
      << audit;
  EXPECT_NE(audit.find(R"("type":"budget","budget":"spend","host":"api.example.test")"),
            std::string::npos)
      << audit;
  EXPECT_NE(r.err.find("model mock-claude: 2 responses, 2500 input tokens (400 cached), 600 "
                       "output tokens, spend $0.0154"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("1 request refused over the session budget `spend`"), std::string::npos)
      << r.err;
}

// An upstream that speaks HTTP/1.1 only (tests/integration/data/upstream.py): a box offering h2
// gets HTTP/1.1 on both sides, with the ordinary exchange (a guard: this held before h2 too).
TEST_P(ProxyH2Test, AnHttp11UpstreamKeepsTheBoxOnHttp11) {
  const std::string dir = w_.root + "/h1";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ASSERT_EQ(sh(fmt::format("cp {0}/srv.pem {0}/srv.key {1}/", up_, dir)), 0);
  uint16_t port = 0;
  ASSERT_TRUE(start_upstream(dir, "unused-git-password", port, grpc_pid_));
  Output r =
      box("echo \"token=$API_TOKEN\"; curl -sS --http2 -v https://api.example.test/echo/h1 -H "
          "\"Authorization: Bearer $API_TOKEN\" 2>&1 | grep -E '^< HTTP/|^you sent|ALPN'",
          port);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string token = token_of(r);
  EXPECT_TRUE(r.has_line("* ALPN: server accepted http/1.1")) << r.out;
  EXPECT_TRUE(r.has_line("< HTTP/1.1 200 OK")) << r.out;
  EXPECT_NE(r.out.find("you sent: Bearer " + token), std::string::npos) << r.out;
  EXPECT_NE(slurp(dir + "/seen.log").find("GET /echo/h1 Bearer " + kRealApi), std::string::npos)
      << slurp(dir + "/seen.log");
}

INSTANTIATE_TEST_SUITE_P(As, ProxyH2Test, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
