// Per-credential budgets end to end (issue 17), through the real `agentbox run` as root and as the
// unprivileged user, against the loopback TLS upstream: the (N+1)th request over `max_requests`
// is answered 429 by agentbox and the upstream saw exactly N; a request after `expires` gets 429
// too (a budget reached), a method outside `methods` 403 (a policy denial); `max_bytes` refuses the
// request that would pass it (and a chunked body). The refusal names the budget, never the
// placeholder; each is audited and the exit summary counts them.
#include <regex>

#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kRealCount = "ghp_RealCountTokenAAAA0123456789abcdefWXYZ";
const std::string kRealRead = "ghp_RealReadOnlyTokenB0123456789abcdefWXYZ";
const std::string kRealExp = "ghp_RealExpiringTokenC0123456789abcdefWXYZ";
const std::string kRealBytes = "ghp_RealBytesTokenDDDD0123456789abcdefWXYZ";

// Prints "code=N" per request and, for a refusal, "refused=<body>"; the box's placeholder first.
std::string requests(const std::string& var, int n, const std::string& curl_args) {
  return fmt::format(
      "echo \"ph=${0}\"; for i in $(seq {1}); do "
      "c=$(curl -sS -o body -w '%{{http_code}}' -H \"Authorization: Bearer ${0}\" {2}); "
      "echo \"code=$c\"; [ \"$c\" = 200 ] || echo \"refused=$(cat body)\"; done",
      var, n, curl_args);
}

class ProxyBudgetTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override {
    return {"count.example.test", "read.example.test", "exp.example.test", "bytes.example.test"};
  }
  std::vector<std::string> secrets() const override {
    return {kRealCount, kRealRead, kRealExp, kRealBytes};
  }
  std::map<std::string, std::string> env() const override {
    return {{"REAL_COUNT", kRealCount},
            {"REAL_READ", kRealRead},
            {"REAL_EXP", kRealExp},
            {"REAL_BYTES", kRealBytes}};
  }
  std::string config() const override {
    return "[network]\n"
           "allow = [\"count.example.test\", \"read.example.test\", \"exp.example.test\",\n"
           "         \"bytes.example.test\"]\n"
           "[credentials.count]\n"
           "env = \"COUNT_TOKEN\"\nfrom = \"env:REAL_COUNT\"\n"
           "hosts = [\"count.example.test\"]\nmax_requests = 3\n"
           "[credentials.readonly]\n"
           "env = \"READ_TOKEN\"\nfrom = \"env:REAL_READ\"\n"
           "hosts = [\"read.example.test\"]\nmethods = [\"GET\", \"HEAD\"]\n"
           "[credentials.exp]\n"
           "env = \"EXP_TOKEN\"\nfrom = \"env:REAL_EXP\"\n"
           "hosts = [\"exp.example.test\"]\nexpires = \"8s\"\n"
           "[credentials.bytes]\n"
           "env = \"BYTES_TOKEN\"\nfrom = \"env:REAL_BYTES\"\n"
           "hosts = [\"bytes.example.test\"]\nmax_bytes = \"2K\"\n";
  }
  // The refusal bodies in `r`, each checked for the placeholder the box printed as "ph=".
  std::vector<std::string> refusals(const Output& r) {
    std::string ph = r.line_starting("ph=").substr(3);
    EXPECT_GE(ph.size(), 20u) << r.out;
    std::vector<std::string> out;
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) {
      if (l.rfind("refused=", 0) == 0) {
        EXPECT_EQ(l.find(ph), std::string::npos) << "the placeholder leaked: " << l;
        out.push_back(l.substr(8));
      }
    }
    return out;
  }
};

TEST_P(ProxyBudgetTest, MaxRequestsRefusesTheNextWith429AndTheUpstreamSeesExactlyN) {
  Output r = box(requests("COUNT_TOKEN", 5, "https://count.example.test/echo/count"), 90000, {},
                 /*quiet=*/false);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 3u) << r.out;
  EXPECT_EQ(count_of(r.out, "code=429\n"), 2u) << r.out;
  EXPECT_EQ(count_of(seen(), "GET /echo/count "), 3u) << seen();
  for (const auto& body : refusals(r)) {
    EXPECT_EQ(body,
              "agentbox: request blocked: credential count reached its budget max_requests = 3");
  }
  const std::string log = audit();
  EXPECT_EQ(count_of(log, R"("type":"credential.budget","credential":"count")"), 2u) << log;
  EXPECT_NE(log.find(R"("budget":"max_requests","requests":3)"), std::string::npos) << log;
  EXPECT_NE(r.err.find("credential count: 2 requests refused over its budget (last: "
                       "max_requests); 3 requests"),
            std::string::npos)
      << r.err;
}

TEST_P(ProxyBudgetTest, AMethodOutsideMethodsIsRefusedWith403) {
  Output r = box(requests("READ_TOKEN", 1, "https://read.example.test/echo/get") + "; " +
                 requests("READ_TOKEN", 1, "-X DELETE https://read.example.test/echo/del") + "; " +
                 requests("READ_TOKEN", 1, "--data x=1 https://read.example.test/echo/post"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 1u) << r.out;
  EXPECT_EQ(count_of(r.out, "code=403\n"), 2u) << r.out;
  const std::string s = seen();
  EXPECT_NE(s.find("GET /echo/get "), std::string::npos) << s;
  EXPECT_EQ(s.find("/echo/del"), std::string::npos) << s;
  EXPECT_EQ(s.find("/echo/post"), std::string::npos) << s;
  auto bodies = refusals(r);
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(bodies[0],
            "agentbox: request blocked: credential readonly may not be used with DELETE (its "
            "`methods`: GET, HEAD)");
  EXPECT_NE(audit().find(R"("credential":"readonly","host":"read.example.test","method":"POST",)"
                         R"("budget":"methods")"),
            std::string::npos)
      << audit();
}

TEST_P(ProxyBudgetTest, AnExpiredCredentialIsRefusedWith429) {
  Output r = box(requests("EXP_TOKEN", 1, "https://exp.example.test/echo/early") + "; sleep 9; " +
                 requests("EXP_TOKEN", 1, "https://exp.example.test/echo/late"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 1u) << r.out;
  EXPECT_EQ(count_of(r.out, "code=429\n"), 1u) << r.out;
  EXPECT_NE(seen().find("GET /echo/early "), std::string::npos) << seen();
  EXPECT_EQ(seen().find("/echo/late"), std::string::npos) << seen();
  auto bodies = refusals(r);
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_EQ(bodies[0],
            "agentbox: request blocked: credential exp reached its budget expires (8 s after the "
            "session started)");
  EXPECT_NE(audit().find(R"("budget":"expires")"), std::string::npos) << audit();
}

TEST_P(ProxyBudgetTest, MaxBytesRefusesTheRequestThatWouldPassIt) {
  // Each POST is ~250 head bytes and a 600-byte body: two fit in 2K, the third would not.
  Output r = box(
      "head -c 600 /dev/zero | tr '\\0' a > six; " +
      requests("BYTES_TOKEN", 3, "--data-binary @six https://bytes.example.test/upload") + "; " +
      requests("BYTES_TOKEN", 1,
               "-H 'Transfer-Encoding: chunked' --data-binary @six "
               "https://bytes.example.test/upload"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 2u) << r.out;
  EXPECT_EQ(count_of(r.out, "code=429\n"), 2u) << r.out;
  EXPECT_EQ(count_of(seen(), "POST /upload "), 2u) << seen();
  auto bodies = refusals(r);
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_TRUE(
      std::regex_match(bodies[0], std::regex("agentbox: request blocked: credential bytes reached "
                                             "its budget max_bytes = 2048 \\(1[0-9]{3} bytes sent, "
                                             "this request [0-9]+\\)")))
      << bodies[0];
  EXPECT_NE(bodies[1].find("a chunked request body"), std::string::npos) << bodies[1];
}

INSTANTIATE_TEST_SUITE_P(As, ProxyBudgetTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
