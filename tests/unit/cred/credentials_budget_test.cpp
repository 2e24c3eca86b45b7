// Per-credential budgets at the decision point (CredentialSet::inspect): the request over a budget
// is refused before anything is swapped, with a reason naming the budget and never a placeholder
// or a secret; only allowed requests count; `format` credentials are held to theirs too.
#include <gtest/gtest.h>

#include <thread>

#include "agentbox/cred/credentials.hpp"
#include "credentials_test_util.hpp"

namespace agentbox::cred {
namespace {

const std::string kReal = "ghp_RealBudgetTokenAAAA0123456789abcdefWXYZ";

struct Budgeted {
  audit::MemorySink sink;
  std::optional<CredentialSet> set;
  std::string ph;
  explicit Budgeted(CredentialSpec spec) {
    spec.name = "gh";
    spec.env = "GH_TOKEN";
    spec.from = policy::SourceSpec::env("GH");
    spec.hosts = {"api.example.test"};
    spec.inject = agentbox::policy::InjectSpec::header("Authorization");
    auto s = CredentialSet::load({std::move(spec)}, fake_env({{"GH", kReal}}), &sink);
    EXPECT_TRUE(s.has_value());
    set.emplace(std::move(*s));
    ph = *set->placeholder("gh");
  }
  Verdict send(const std::string& method, const std::string& extra = "") {
    auto req = parse(method + " /x HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer " +
                     ph + "\r\n" + extra + "\r\n");
    Verdict v = set->inspect(req, "api.example.test");
    if (v.blocked) {
      EXPECT_EQ(v.reason.find(ph), std::string::npos) << v.reason;
      EXPECT_EQ(v.reason.find(kReal), std::string::npos) << v.reason;
      EXPECT_NE(req.header("authorization"), "Bearer " + kReal) << "swapped although refused";
    }
    return v;
  }
};

TEST(CredentialBudget, MaxRequestsRefusesTheNextAndOnlyAllowedOnesCount) {
  Budgeted b({.max_requests = 2});
  EXPECT_FALSE(b.send("GET").blocked);
  EXPECT_FALSE(b.send("GET").blocked);
  for (int i = 0; i < 3; ++i) {
    Verdict v = b.send("GET");
    EXPECT_TRUE(v.blocked);
    EXPECT_EQ(v.budget, Budget::kRequests);
    EXPECT_EQ(v.reason, "credential gh reached its budget max_requests = 2");
  }
  auto summary = b.set->budget_summary();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_NE(summary[0].find("gh: 3 requests refused over its budget (last: max_requests); 2 "
                            "requests"),
            std::string::npos)
      << summary[0];
  EXPECT_NE(b.sink.lines().find(R"("type":"credential.budget","credential":"gh")"),
            std::string::npos);
}

TEST(CredentialBudget, MethodsAreExactAndRefusedWithTheirOwnBudget) {
  Budgeted b({.methods = {"GET", "HEAD"}});
  EXPECT_FALSE(b.send("GET").blocked);
  EXPECT_FALSE(b.send("HEAD").blocked);
  for (const char* m : {"POST", "DELETE", "PUT", "PATCH", "OPTIONS"}) {
    Verdict v = b.send(m);
    EXPECT_TRUE(v.blocked) << m;
    EXPECT_EQ(v.budget, Budget::kMethods) << m;
  }
  EXPECT_TRUE(b.send("get").blocked) << "methods are case-sensitive (RFC 9110)";
}

TEST(CredentialBudget, ExpiresFromLoad) {
  Budgeted b({.expires_seconds = 1});
  EXPECT_FALSE(b.send("GET").blocked);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Verdict v = b.send("GET");
  EXPECT_TRUE(v.blocked);
  EXPECT_EQ(v.budget, Budget::kExpired);
}

TEST(CredentialBudget, MaxBytesCountsHeadAndDeclaredBodyAndRefusesChunked) {
  Budgeted b({.max_bytes = 1000});
  EXPECT_FALSE(b.send("POST", "Content-Length: 400\r\n").blocked);
  Verdict v = b.send("POST", "Content-Length: 400\r\n");
  EXPECT_TRUE(v.blocked) << "two ~500-byte requests pass 1000";
  EXPECT_EQ(v.budget, Budget::kBytes);
  EXPECT_FALSE(b.send("GET").blocked) << "a small one still fits";
  v = b.send("POST", "Transfer-Encoding: chunked\r\n");
  EXPECT_TRUE(v.blocked);
  EXPECT_NE(v.reason.find("chunked"), std::string::npos);
}

TEST(CredentialBudget, AnAddedFormatHeaderIsHeldToTheBudgetToo) {
  audit::MemorySink sink;
  auto s = CredentialSet::load({{.name = "api",
                                 .env = "API_KEY",
                                 .from = policy::SourceSpec::env("API"),
                                 .hosts = {"api.example.test"},
                                 .inject = agentbox::policy::InjectSpec::header("Authorization"),
                                 .format = "Bearer {}",
                                 .max_requests = 1}},
                               fake_env({{"API", kReal}}), &sink);
  ASSERT_TRUE(s.has_value());
  auto req = parse("GET /a HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
  EXPECT_FALSE(s->inspect(req, "api.example.test").blocked);
  req = parse("GET /b HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
  Verdict v = s->inspect(req, "api.example.test");
  EXPECT_TRUE(v.blocked);
  EXPECT_EQ(v.budget, Budget::kRequests);
  EXPECT_FALSE(req.header("authorization").has_value()) << "nothing added to a refused request";
}

}  // namespace
}  // namespace agentbox::cred
