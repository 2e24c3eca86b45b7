// Passthrough hosts (issue 14 item 9), through the real `agentbox run` as root and as the user:
// a host no credential or HTTP rule names is spliced unread, so a fronted Host inside its TLS and
// a placeholder sent to it go out unseen (the documented limit, shown here). `inspect = true` on
// its allow rule, or --inspect-all, intercepts it with the session CA only to check Host = SNI
// and to block every credential's placeholder (403 + audit line), injecting nothing. curl in
// the box; judged by the upstream's own request log (seen.log) and the audit log.
#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kRealApi = "ghp_RealInspectTokenDDD0123456789abcdefWXYZ";

class ProxyInspectTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override {
    return {"cdn.example.test", "plain.example.test", "api.example.test"};
  }
  std::vector<std::string> secrets() const override { return {kRealApi}; }
  std::map<std::string, std::string> env() const override { return {{"REAL_API", kRealApi}}; }
  void prepare() override {
    ASSERT_EQ(sh(fmt::format("cp {}/ca.pem {}/up-ca.pem", up_, w_.ws)), 0);
    chown_tree(w_.ws + "/up-ca.pem", w_.as.uid, w_.as.gid);
  }
  std::string config() const override {
    return "[network]\n"
           "allow = [{ host = \"cdn.example.test\", inspect = true }, \"plain.example.test\", "
           "\"api.example.test\"]\n"
           "[credentials.api]\n"
           "env = \"API_TOKEN\"\n"
           "from = \"env:REAL_API\"\n"
           "hosts = [\"api.example.test\"]\n";
  }
  // One line per request, "NAME CODE" (000: no HTTP answer); trusts the box's store (the session
  // CA, when there is one) and the upstream's CA (the passthrough hosts' real certificate).
  static std::string script(const std::string& requests) {
    return "cat /etc/ssl/certs/ca-certificates.crt up-ca.pem > both.pem; "
           "c() { n=$1; shift; echo \"$n $(curl -s -o /dev/null --cacert both.pem "
           "-w '%{http_code}' \"$@\")\"; }; echo \"token $API_TOKEN\"; " +
           requests;
  }
  std::string placeholder(const Output& r) {
    std::string t = r.line_starting("token ");
    return t.size() > 6 ? t.substr(6) : "";
  }
};

TEST_P(ProxyInspectTest, AnInspectedHostRefusesFrontingAndPlaceholders) {
  Output r = box(script(
      "c front -H 'Host: api.example.test' https://cdn.example.test/echo/front; "
      "c header -H \"Authorization: Bearer $API_TOKEN\" https://cdn.example.test/echo/header; "
      "c query \"https://cdn.example.test/echo/query?k=$API_TOKEN\"; "
      "c body --data-binary \"t=$API_TOKEN\" https://cdn.example.test/record-body; "
      "c plain https://cdn.example.test/echo/plain"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string ph = placeholder(r);
  ASSERT_EQ(ph.size(), kRealApi.size()) << r.out;
  EXPECT_TRUE(r.has_line("plain 200")) << r.out;  // inspected, not blocked
  for (const char* n : {"front", "header", "query", "body"}) {
    const std::string line = r.line_starting(std::string(n) + " ");
    EXPECT_TRUE(line.size() > 2 && line[line.size() - 3] == '4') << n << ": " << r.out;
  }
  const std::string s = seen();
  EXPECT_NE(s.find("GET /echo/plain"), std::string::npos) << s;
  EXPECT_EQ(s.find("/echo/front"), std::string::npos) << s;
  EXPECT_EQ(s.find("/echo/header"), std::string::npos) << s;
  EXPECT_EQ(s.find("/echo/query"), std::string::npos) << s;
  EXPECT_EQ(s.find(ph), std::string::npos) << s;        // the placeholder never went out
  EXPECT_EQ(s.find(kRealApi), std::string::npos) << s;  // nor was anything injected
  const std::string a = audit();
  EXPECT_NE(a.find(R"("credential":"api","host":"cdn.example.test")"), std::string::npos) << a;
  EXPECT_NE(a.find(R"("mode":"intercept","sni":"cdn.example.test")"), std::string::npos) << a;
}

// The documented limit: without inspection the same requests to a passthrough host reach it.
TEST_P(ProxyInspectTest, APassthroughHostIsNotReadAsDocumented) {
  Output r = box(script(
      "c front -H 'Host: api.example.test' https://plain.example.test/echo/front; "
      "c header -H \"Authorization: Bearer $API_TOKEN\" https://plain.example.test/echo/header"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string ph = placeholder(r);
  ASSERT_EQ(ph.size(), kRealApi.size()) << r.out;
  EXPECT_TRUE(r.has_line("front 200")) << r.out;
  EXPECT_TRUE(r.has_line("header 200")) << r.out;
  const std::string s = seen();
  EXPECT_NE(s.find("GET /echo/front"), std::string::npos) << s;
  EXPECT_NE(s.find("GET /echo/header Bearer " + ph), std::string::npos) << s;
  EXPECT_NE(audit().find(R"("mode":"passthrough","sni":"plain.example.test")"), std::string::npos);
}

TEST_P(ProxyInspectTest, InspectAllCoversEveryAllowedHost) {
  extra_flags_ = {"--inspect-all"};
  Output r = box(script(
      "c front -H 'Host: api.example.test' https://plain.example.test/echo/front; "
      "c header -H \"Authorization: Bearer $API_TOKEN\" https://plain.example.test/echo/header; "
      "c plain https://plain.example.test/echo/plain"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("plain 200")) << r.out;
  for (const char* n : {"front", "header"}) {
    const std::string line = r.line_starting(std::string(n) + " ");
    EXPECT_TRUE(line.size() > 2 && line[line.size() - 3] == '4') << n << ": " << r.out;
  }
  const std::string s = seen();
  EXPECT_EQ(s.find("/echo/front"), std::string::npos) << s;
  EXPECT_EQ(s.find("/echo/header"), std::string::npos) << s;
  EXPECT_NE(s.find("GET /echo/plain"), std::string::npos) << s;
}

INSTANTIATE_TEST_SUITE_P(As, ProxyInspectTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
