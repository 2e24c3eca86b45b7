// `ask = true` on a credential (credential_consent.cpp): a request that would carry the real value
// waits for an answer through policy::Approver; once lets the waiting requests go, deny blocks
// them (and the next request asks again), session lets every later one go; without an approver
// the value never goes. The real value never appears in a request before an allowing answer.
#include <gtest/gtest.h>

#include <vector>

#include "agentbox/cred/credentials.hpp"
#include "credentials_test_util.hpp"

namespace agentbox::cred {
namespace {

const std::string kReal = "ghp_RealAskTokenAAAAAAA0123456789abcdefWXYZ";
const std::string kHost = "api.example.test";

// Questions are kept; the test answers them.
struct FakeApprover : policy::Approver {
  std::vector<std::pair<policy::Question, policy::AnswerCallback>> asked;
  void ask(policy::Question q, policy::AnswerCallback answer) override {
    asked.emplace_back(std::move(q), std::move(answer));
  }
};

struct Asking {
  std::optional<CredentialSet> set;
  std::string ph;
  FakeApprover approver;
  int woken = 0;
  explicit Asking(bool with_approver = true) {
    auto s = CredentialSet::load({{.name = "gh",
                                   .env = "GH_TOKEN",
                                   .from = policy::SourceSpec::env("GH"),
                                   .hosts = {kHost},
                                   .inject = agentbox::policy::InjectSpec::header("Authorization"),
                                   .ask = true}},
                                 fake_env({{"GH", kReal}}), nullptr);
    EXPECT_TRUE(s.has_value());
    set.emplace(std::move(*s));
    ph = *set->placeholder("gh");
    if (with_approver) {
      set->set_approver(&approver);
    }
  }
  http::Request request() {
    return parse("POST /repos/x?t=" + ph + " HTTP/1.1\r\nHost: " + kHost +
                 "\r\nAuthorization: Bearer " + ph + "\r\n\r\n");
  }
  bool waits(const http::Request& r) {
    return set->await_fresh(r, kHost, false, [this] { ++woken; });
  }
  // The request as it would leave: the verdict, and whether the real value is in it.
  std::pair<Verdict, bool> send(http::Request r) {
    Verdict v = set->inspect(r, kHost);
    return {v, r.header("authorization").value_or("").find(kReal) != std::string::npos};
  }
};

TEST(CredentialAsk, TheFirstUseWaitsAndOnceLetsOnlyTheWaitingRequestsGo) {
  Asking a;
  EXPECT_TRUE(a.set->asks());
  auto r1 = a.request();
  auto r2 = a.request();
  ASSERT_TRUE(a.waits(r1));
  ASSERT_TRUE(a.waits(r2));  // joins the same question
  ASSERT_EQ(a.approver.asked.size(), 1u);
  EXPECT_EQ(a.approver.asked[0].first.kind, policy::ApprovalKind::credential);
  EXPECT_EQ(a.approver.asked[0].first.subject, "gh");
  EXPECT_EQ(a.approver.asked[0].first.detail, "POST https://api.example.test/repos/x");
  EXPECT_EQ(a.approver.asked[0].first.detail.find(a.ph), std::string::npos);
  a.approver.asked[0].second(policy::Answer::allow_once);
  EXPECT_EQ(a.woken, 2);
  for (auto* r : {&r1, &r2}) {
    EXPECT_FALSE(a.waits(*r));
    auto [v, real] = a.send(*r);
    EXPECT_FALSE(v.blocked) << v.reason;
    EXPECT_TRUE(real);
  }
  // The third asks again.
  auto r3 = a.request();
  EXPECT_TRUE(a.waits(r3));
  EXPECT_EQ(a.approver.asked.size(), 2u);
}

TEST(CredentialAsk, DenyBlocksTheWaitingRequestAndTheNextAsksAgain) {
  Asking a;
  auto r1 = a.request();
  ASSERT_TRUE(a.waits(r1));
  a.approver.asked[0].second(policy::Answer::deny);
  EXPECT_FALSE(a.waits(r1));
  auto [v, real] = a.send(r1);
  EXPECT_TRUE(v.blocked);
  EXPECT_FALSE(real);
  EXPECT_NE(v.reason.find("credential gh was not approved"), std::string::npos) << v.reason;
  auto r2 = a.request();
  EXPECT_TRUE(a.waits(r2));
  EXPECT_EQ(a.approver.asked.size(), 2u);
}

TEST(CredentialAsk, SessionLetsEveryLaterRequestGoWithoutAsking) {
  Asking a;
  auto r1 = a.request();
  ASSERT_TRUE(a.waits(r1));
  a.approver.asked[0].second(policy::Answer::allow_session);
  for (int i = 0; i < 3; ++i) {
    auto r = a.request();
    EXPECT_FALSE(a.waits(r));
    auto [v, real] = a.send(r);
    EXPECT_FALSE(v.blocked) << v.reason;
    EXPECT_TRUE(real);
  }
  EXPECT_EQ(a.approver.asked.size(), 1u);
}

TEST(CredentialAsk, WithoutAnApproverTheValueNeverGoes) {
  Asking a(/*with_approver=*/false);
  auto r = a.request();
  EXPECT_FALSE(a.waits(r));
  auto [v, real] = a.send(r);
  EXPECT_TRUE(v.blocked);
  EXPECT_FALSE(real);
  EXPECT_NE(v.reason.find("needs approval"), std::string::npos) << v.reason;
}

TEST(CredentialAsk, InspectWithoutWaitingNeverSwaps) {
  // A path that skipped await_fresh (or a request that arrived while a question waits) is
  // blocked rather than sent with the real value.
  Asking a;
  auto r1 = a.request();
  ASSERT_TRUE(a.waits(r1));
  auto [v, real] = a.send(a.request());
  EXPECT_TRUE(v.blocked);
  EXPECT_FALSE(real);
}

}  // namespace
}  // namespace agentbox::cred
