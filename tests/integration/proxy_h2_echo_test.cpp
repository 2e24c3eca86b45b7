// A hostile HTTP/2 upstream echoing the real token, through the real `agentbox run` (as root and
// as the unprivileged user), curl --http2 in the box: every form of echo_forms.hpp (raw, base64
// of both alphabets at every alignment, Basic, hex, percent and JSON escapes, mixed) in response
// headers, a header's name, an interim 103, DATA (and split across DATA frames at every offset
// inside every form), trailers and a Content-Encoding the proxy refuses; and a token split where
// the flow-control window closes while the box reads slowly. The upstream (h2_hostile_upstream.cpp)
// is nghttp2, so the test decides where every DATA frame ends. Judged outside the box: no decoding
// of what the box received holds the real token, and every echo came back as the placeholder.
#include <sstream>

#include "echo_forms.hpp"
#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kReal = "ghp_RealH2EchoTokenAAA0123456789abcdefWXYZ";

class ProxyH2EchoTest : public WorldTest {
 protected:
  void SetUp() override {
    if (!enter_world()) {
      return;
    }
    up_ = w_.root + "/upstream";
    ASSERT_EQ(::mkdir(up_.c_str(), 0755), 0);
    ASSERT_TRUE(make_upstream_certs(up_, {"api.example.test"}));
    port_ = free_port();
    ASSERT_TRUE(start_server({AGENTBOX_H2_HOSTILE, up_, std::to_string(port_)}, up_, pid_))
        << "the h2 upstream did not start";
    cfg_ = w_.root + "/cfg";
    ASSERT_EQ(::mkdir(cfg_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((cfg_ + "/agentbox").c_str(), 0755), 0);
    write_file(cfg_ + "/agentbox/config.toml",
               "[network]\n"
               "allow = [\"api.example.test\"]\n"
               "[credentials.api]\n"
               "env = \"API_TOKEN\"\n"
               "from = \"env:REAL_API\"\n"
               "hosts = [\"api.example.test\"]\n");
    chown_tree(cfg_, w_.as.uid, w_.as.gid);
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (made_) {
      if (!all_audit_logs(w_).empty()) {
        expect_tree_lacks(w_.state, {kReal}, R"("type":"session.start")");
      }
      destroy_world(w_);
    }
  }
  // `agentbox run` with `sh -c script` inside; no decoding of its output holds the real token.
  Output box(const std::string& script) {
    RunOptions o;
    o.env = {{"REAL_API", kReal}, {"XDG_CONFIG_HOME", cfg_}};
    o.timeout_ms = 120000;
    Output r =
        run(w_,
            {"run", "-q", "--upstream-ca", up_ + "/ca.pem", "--connect-to",
             fmt::format("api.example.test:443:127.0.0.1:{}", port_), "--", "sh", "-c", script},
            o);
    EXPECT_FALSE(holds_secret(r.out, kReal)) << leaking_lines(r.out);
    EXPECT_FALSE(holds_secret(r.err, kReal)) << leaking_lines(r.err);
    return r;
  }
  // The lines (at most 10) a secret is decoded from, for the failure message.
  static std::string leaking_lines(const std::string& text) {
    std::string out;
    std::istringstream in(text);
    int n = 0;
    for (std::string line; std::getline(in, line) && n < 10;) {
      if (holds_secret(line, kReal)) {
        out += line + "\n";
        ++n;
      }
    }
    return out.empty() ? "(across lines) " + text.substr(0, 2000) : out;
  }
  std::string seen() { return slurp(up_ + "/seen.log"); }

  std::string up_;
  std::string cfg_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// Lines of `text` without their CR, each once.
std::map<std::string, std::string> lines_by_key(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    const size_t sep = line.rfind(line.rfind("< ", 0) == 0 ? ": " : " ");
    if (sep != std::string::npos) {
      out[line.substr(0, sep)] = line.substr(sep + (line.rfind("< ", 0) == 0 ? 2 : 1));
    }
  }
  return out;
}

std::string token_of(const Output& r) {
  const std::string t = r.line_starting("token=");
  return t.size() > 6 ? t.substr(6) : std::string();
}

TEST_P(ProxyH2EchoTest, EveryFormInHeadersDataSplitDataAndTrailersComesBackAsThePlaceholder) {
  Output r =
      box("echo \"token=$API_TOKEN\"; "
          // -v and the body in two files: written to one pipe, curl's two streams interleave.
          "curl -sS --http2 -v https://api.example.test/forms -H \"Authorization: Bearer "
          "$API_TOKEN\" -o body 2>head; cat head body; "
          "curl -sS --http2 -v https://api.example.test/coding -H \"Authorization: Bearer "
          "$API_TOKEN\" -o body 2>head; cat head body");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string token = token_of(r);
  ASSERT_EQ(token.size(), kReal.size()) << r.out.substr(0, 4000);
  EXPECT_NE(seen().find("h2 GET /forms Bearer " + kReal), std::string::npos) << seen();
  EXPECT_TRUE(r.has_line("< HTTP/2 200 ")) << r.out.substr(0, 4000);
  const auto got = lines_by_key(r.out);
  const auto placeholder_in = [&](const std::string& key) {
    const auto it = got.find(key);
    return it != got.end() && holds_secret(it->second, token);
  };
  size_t checked = 0;
  for (const auto& [name, value] : echo_forms(kReal)) {
    EXPECT_TRUE(placeholder_in("< x-f-" + name)) << "header " << name;
    EXPECT_TRUE(placeholder_in("< x-t-" + name)) << "trailer " << name;
    EXPECT_TRUE(placeholder_in(name)) << "DATA " << name;
    for (size_t k = 1; k < value.size(); ++k) {
      const std::string key = "split-" + name + "-" + std::to_string(k);
      EXPECT_TRUE(placeholder_in(key)) << key;
      ++checked;
    }
  }
  EXPECT_GT(checked, size_t{2000});
  EXPECT_TRUE(r.has_line("end")) << "the body was cut short";
  // The field named by the hex form (a valid lowercase name) is renamed, not dropped.
  bool named = false;
  for (const auto& [key, value] : got) {
    named = named || (value == "name" && holds_secret(key, token));
  }
  EXPECT_TRUE(named);
  // The coding the proxy refuses is named in the refusal, as the placeholder.
  EXPECT_TRUE(r.has_line("< HTTP/2 502 ")) << r.out.substr(r.out.size() - 3000);
  const std::string refusal = r.line_starting("agentbox: request blocked: response from");
  EXPECT_NE(refusal.find("Content-Encoding `" + token + "`"), std::string::npos) << refusal;
}

// The box reads slowly (curl --limit-rate), so the proxy's window toward the upstream closes
// and stays closed; the upstream ends each window with the token's first half and sends the rest
// only once the window came back after 150 ms or more (8 times): a tail held across a closed
// window must not go out alone after the hold timer (50 ms). Passed on main too (8 splits a run,
// none leaked; likely because the proxy reads nothing more from the upstream while the box side
// is full, so the frame with the first half mostly waits in the socket); kept as that guard.
TEST_P(ProxyH2EchoTest, ATokenSplitWhereTheWindowClosesIsScrubbedWhileTheBoxReadsSlowly) {
  Output r =
      box("echo \"token=$API_TOKEN\"; "
          "curl -sS --http2 https://api.example.test/stall -H \"Authorization: Bearer $API_TOKEN\" "
          "--limit-rate 200k | tr -s '\\n'");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string token = token_of(r);
  ASSERT_EQ(token.size(), kReal.size()) << r.out;
  EXPECT_NE(seen().find("stall split after"), std::string::npos)
      << "the upstream's window never stayed closed: " << seen();
  EXPECT_TRUE(r.has_line(token)) << r.out;
}

INSTANTIATE_TEST_SUITE_P(As, ProxyH2EchoTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
