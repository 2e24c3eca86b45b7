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
  EXPECT_EQ(v.reason, "credential gh reached its budget expires (1 s after the session started)");
}

// What a client is answered: a budget reached (count, size, time) is 429; a method the
// credential may never go with is a policy denial, 403 (docs/CONFIG.md, "Budgets").
TEST(CredentialBudget, EachBudgetIsAnsweredWithItsStatus) {
  EXPECT_EQ(refusal_status(Budget::kRequests), 429);
  EXPECT_EQ(refusal_status(Budget::kBytes), 429);
  EXPECT_EQ(refusal_status(Budget::kExpired), 429);
  EXPECT_EQ(refusal_status(Budget::kMethods), 403);
  for (Budget b : {Budget::kRequests, Budget::kBytes, Budget::kMethods, Budget::kExpired}) {
    EXPECT_EQ(budget_named(budget_key(b)), b) << budget_key(b);
  }
  EXPECT_EQ(budget_named("spend"), Budget::kNone);
}

// state() shows what each credential spent against its limits (`agentbox ps`).
TEST(CredentialBudget, StateShowsUseAgainstTheLimits) {
  Budgeted b({.max_requests = 5, .max_bytes = 100000, .methods = {"GET"}, .expires_seconds = 600});
  EXPECT_FALSE(b.send("GET").blocked);
  EXPECT_FALSE(b.send("GET").blocked);
  EXPECT_TRUE(b.send("POST").blocked);
  auto st = b.set->state();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].requests, 2u);
  EXPECT_GT(st[0].bytes, 100u);
  EXPECT_EQ(st[0].refused, 1u);
  EXPECT_EQ(st[0].max_requests, 5u);
  EXPECT_EQ(st[0].max_bytes, 100000u);
  EXPECT_EQ(st[0].methods, std::vector<std::string>{"GET"});
  ASSERT_TRUE(st[0].expires_in_s.has_value());
  EXPECT_GT(*st[0].expires_in_s, 590);
  EXPECT_LE(*st[0].expires_in_s, 600);
  Budgeted none({});
  st = none.set->state();
  EXPECT_FALSE(st[0].max_requests || st[0].max_bytes || st[0].expires_in_s);
}

// A budget changed live (`agentbox budget --credential`): a limit below what was used refuses
// the next request; `none` lifts it; expires counts from the change.
TEST(CredentialBudget, ALiveChangeAppliesToTheNextRequest) {
  using S = CredentialSet::BudgetSetting;
  Budgeted b({});
  EXPECT_FALSE(b.send("GET").blocked);
  EXPECT_FALSE(b.send("GET").blocked);
  ASSERT_TRUE(b.set->set_budget("gh", S{.key = Budget::kRequests, .value = 1, .methods = {}}));
  Verdict v = b.send("GET");
  EXPECT_TRUE(v.blocked);
  EXPECT_EQ(v.reason, "credential gh reached its budget max_requests = 1");
  ASSERT_TRUE(b.set->set_budget("gh", S{.key = Budget::kRequests, .value = {}, .methods = {}}));
  EXPECT_FALSE(b.send("GET").blocked) << "none lifts it";

  ASSERT_TRUE(b.set->set_budget("gh", S{.key = Budget::kBytes, .value = 10, .methods = {}}));
  EXPECT_EQ(b.send("GET").budget, Budget::kBytes);
  ASSERT_TRUE(b.set->set_budget("gh", S{.key = Budget::kBytes, .value = {}, .methods = {}}));

  ASSERT_TRUE(
      b.set->set_budget("gh", S{.key = Budget::kMethods, .value = {}, .methods = {"HEAD"}}));
  EXPECT_EQ(b.send("GET").budget, Budget::kMethods);
  EXPECT_FALSE(b.send("HEAD").blocked);
  ASSERT_TRUE(b.set->set_budget("gh", S{.key = Budget::kMethods, .value = {}, .methods = {}}));
  EXPECT_FALSE(b.send("GET").blocked) << "no methods: any";

  ASSERT_TRUE(b.set->set_budget("gh", S{.key = Budget::kExpired, .value = 0, .methods = {}}));
  v = b.send("GET");
  EXPECT_EQ(v.budget, Budget::kExpired);
  EXPECT_EQ(v.reason,
            "credential gh reached its budget expires (0 s after `agentbox budget` set it)");
  ASSERT_TRUE(b.set->set_budget("gh", S{.key = Budget::kExpired, .value = 3600, .methods = {}}));
  EXPECT_FALSE(b.send("GET").blocked);
  EXPECT_GT(*b.set->state()[0].expires_in_s, 3590);

  EXPECT_FALSE(b.set->set_budget("nope", S{.key = Budget::kRequests, .value = 1, .methods = {}}));
  EXPECT_EQ(b.set->state()[0].max_requests, std::nullopt);
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
