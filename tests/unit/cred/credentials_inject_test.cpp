// Credentials: `format` (a header added when the box did not send it), body injection by
// opt-in, and stale file:/cmd: values re-read through an asynchronous refresher.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>

#include "agentbox/cred/credentials.hpp"
#include "credentials_test_util.hpp"

namespace agentbox::cred {
namespace {

const std::string kApi = "sk-ant-api03-RealAnthropicKeyValue0123456789abcdefXYZ";
const std::string kBodyKey = "xoxb-1234567890-REALSLACKBODYTOKEN0123456789";

class InjectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto set =
        CredentialSet::load({{.name = "api",
                              .env = "API_KEY",
                              .from = policy::SourceSpec::env("API"),
                              .hosts = {"api.example.test"},
                              .inject = agentbox::policy::InjectSpec::header("Authorization"),
                              .format = "Bearer {}"},
                             {.name = "slack",
                              .env = "SLACK_TOKEN",
                              .from = policy::SourceSpec::env("SLACK"),
                              .hosts = {"slack.example.test"},
                              .inject = agentbox::policy::InjectSpec::header("Authorization"),
                              .body = true}},
                            fake_env({{"API", kApi}, {"SLACK", kBodyKey}}), &sink_);
    ASSERT_TRUE(set.has_value()) << set.error().message();
    set_.emplace(std::move(*set));
    api_ph_ = *set_->placeholder("api");
    slack_ph_ = *set_->placeholder("slack");
  }
  void TearDown() override {
    const std::string log = sink_.lines();
    EXPECT_EQ(log.find(kApi), std::string::npos) << log;
    EXPECT_EQ(log.find(kBodyKey), std::string::npos) << log;
  }
  audit::MemorySink sink_;
  std::optional<CredentialSet> set_;
  std::string api_ph_;
  std::string slack_ph_;
};

TEST_F(InjectTest, FormatAddsTheHeaderWhenTheBoxSentNone) {
  auto req = parse("GET /v1/models HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
  const auto v = set_->inspect(req, "api.example.test");
  ASSERT_FALSE(v.blocked) << v.reason;
  EXPECT_EQ(v.used, std::vector<std::string>{"api"});
  EXPECT_EQ(req.header("authorization"), "Bearer " + kApi);
  EXPECT_EQ(req.header("accept-encoding"), "identity");  // the echo can be scrubbed
  EXPECT_NE(sink_.lines().find(R"("how":"added")"), std::string::npos) << sink_.lines();
  // The box still has its variable (tools that can be configured keep using it).
  bool has_env = false;
  for (const auto& [k, v2] : set_->placeholder_env()) {
    has_env = has_env || (k == "API_KEY" && v2 == api_ph_);
  }
  EXPECT_TRUE(has_env);
}

TEST_F(InjectTest, FormatSwapsThePlaceholderTheBoxSent) {
  auto req = parse("GET / HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer " + api_ph_ +
                   "\r\n\r\n");
  const auto v = set_->inspect(req, "api.example.test");
  ASSERT_FALSE(v.blocked) << v.reason;
  EXPECT_EQ(v.used, std::vector<std::string>{"api"});
  size_t n = 0;
  for (const auto& h : req.headers) {
    n += http::iequals(h.name, "authorization") ? 1 : 0;
  }
  EXPECT_EQ(n, 1u) << "a second Authorization header was added";
  EXPECT_EQ(req.header("authorization"), "Bearer " + kApi);
}

TEST_F(InjectTest, FormatLeavesTheBoxsOwnValueAndAuditsIt) {
  auto req = parse(
      "GET / HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer someone-elses\r\n\r\n");
  const auto v = set_->inspect(req, "api.example.test");
  ASSERT_FALSE(v.blocked);
  EXPECT_TRUE(v.used.empty());
  EXPECT_EQ(req.header("authorization"), "Bearer someone-elses");
  EXPECT_NE(sink_.lines().find(R"("type":"credential.skip","credential":"api")"), std::string::npos)
      << sink_.lines();
}

TEST_F(InjectTest, FormatAddsNothingOffScopeOrInCleartext) {
  auto other = parse("GET / HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n");
  EXPECT_FALSE(set_->inspect(other, "elsewhere.test").blocked);
  EXPECT_FALSE(other.header("authorization"));
  auto plain = parse("GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
  EXPECT_FALSE(set_->inspect(plain, "api.example.test", {}, /*cleartext=*/true).blocked);
  EXPECT_FALSE(plain.header("authorization"));
}

TEST_F(InjectTest, RevokedFormatCredentialBlocksInsteadOfAdding) {
  ASSERT_TRUE(set_->revoke("api"));
  auto req = parse("GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
  const auto v = set_->inspect(req, "api.example.test");
  EXPECT_TRUE(v.blocked);
  EXPECT_FALSE(req.header("authorization"));
}

TEST(InjectSpecs, FormatAndHeaderNamesAreChecked) {
  EXPECT_TRUE(check_format("Bearer {}"));
  EXPECT_TRUE(check_format(""));
  EXPECT_FALSE(check_format("Bearer"));
  EXPECT_FALSE(check_format("{} and {}"));
  EXPECT_FALSE(check_format("Bearer {}\r\nX-Evil: 1"));
  EXPECT_FALSE(check_format("Bearer {}\n"));
  EXPECT_TRUE(InjectSpec::parse("header:X-Api-Key"));
  EXPECT_FALSE(InjectSpec::parse("header:X Api"));
  EXPECT_FALSE(InjectSpec::parse("header:X:Y"));
  auto load = [](CredentialSpec s) {
    return CredentialSet::load({std::move(s)}, fake_env({{"K", kApi}}), nullptr);
  };
  EXPECT_FALSE(load({.name = "a",
                     .from = policy::SourceSpec::env("K"),
                     .hosts = {"x.test"},
                     .inject = agentbox::policy::InjectSpec::basic(),
                     .format = "Bearer {}"}));
  EXPECT_FALSE(load({.name = "a",
                     .from = policy::SourceSpec::env("K"),
                     .hosts = {"x.test"},
                     .inject = agentbox::policy::InjectSpec::header("Authorization"),
                     .format = "Bearer {}\r\n"}));
  EXPECT_FALSE(load({.name = "a",
                     .from = policy::SourceSpec::env("K"),
                     .hosts = {"x.test"},
                     .inject = agentbox::policy::InjectSpec::sigv4(),
                     .body = true}));
  EXPECT_TRUE(load({.name = "a",
                    .from = policy::SourceSpec::env("K"),
                    .hosts = {"x.test"},
                    .inject = agentbox::policy::InjectSpec::header("Authorization"),
                    .format = "token {}",
                    .body = true}));
}

TEST_F(InjectTest, BodyInjectorSwapsAcrossEveryPossibleSplit) {
  const std::string body = "token=" + slack_ph_ + "&channel=C1&again=" + slack_ph_;
  const std::string want = "token=" + kBodyKey + "&channel=C1&again=" + kBodyKey;
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    BodyInjector inj = set_->body_injector("slack.example.test", false);
    ASSERT_FALSE(inj.empty());
    std::string out = inj.feed(body.substr(0, cut));
    out += inj.feed(body.substr(cut));
    out += inj.finish();
    ASSERT_EQ(out, want) << "split at " << cut;
    EXPECT_EQ(inj.take_new_uses(), std::vector<std::string>{"slack"});
    EXPECT_TRUE(inj.take_new_uses().empty());  // reported once
  }
}

TEST_F(InjectTest, BodyInjectorStreamsBytesThatStartNoPlaceholder) {
  BodyInjector inj = set_->body_injector("slack.example.test", false);
  EXPECT_EQ(inj.feed("{\"text\":\"hello\"}"), "{\"text\":\"hello\"}");
  EXPECT_EQ(inj.held(), 0u);
  // A tail that may start the placeholder is held, and released as it is at the end.
  const std::string partial = slack_ph_.substr(0, 7);
  EXPECT_EQ(inj.feed("x" + partial), "x");
  EXPECT_EQ(inj.held(), partial.size());
  EXPECT_EQ(inj.finish(), partial);
  EXPECT_TRUE(inj.take_new_uses().empty());
}

TEST_F(InjectTest, NoBodyInjectionOffScopeInCleartextOrWithoutOptIn) {
  EXPECT_TRUE(set_->body_injector("elsewhere.test", false).empty());
  EXPECT_TRUE(set_->body_injector("slack.example.test", true).empty());
  EXPECT_TRUE(set_->body_injector("api.example.test", false).empty());  // api: no `body`
}

// A file: credential whose value changes on disk, re-read after its ttl through a refresher
// that the test runs by hand (the proxy's runs on a worker thread).
TEST(Refresh, StaleValueWaitsForTheRefresherOthersDoNot) {
  char dir[] = "/tmp/agentbox-refresh-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/token";
  const std::string v1 = "ghp_FirstValueOfTheTokenAAAA0123456789abcd";
  const std::string v2 = "ghp_SecondValueOfTheTokenBBB0123456789abcd";
  std::ofstream(file) << v1 << "\n";
  auto set = CredentialSet::load({{.name = "gh",
                                   .env = "GH_TOKEN",
                                   .from = policy::SourceSpec::file(file),
                                   .hosts = {"api.github.test"},
                                   .inject = agentbox::policy::InjectSpec::header("Authorization"),
                                   .ttl_seconds = 0}},
                                 fake_env({}), nullptr);
  ASSERT_TRUE(set) << set.error().message();
  const std::string ph = *set->placeholder("gh");
  std::vector<std::pair<policy::SourceSpec, std::function<void(base::Result<std::string>)>>> jobs;
  set->set_refresher(
      [&](policy::SourceSpec from, std::function<void(base::Result<std::string>)> done) {
        jobs.emplace_back(std::move(from), std::move(done));
        return true;
      });
  std::ofstream(file) << v2 << "\n";
  ::sleep(1);  // values are re-read at most once a second
  auto req =
      parse("GET / HTTP/1.1\r\nHost: api.github.test\r\nAuthorization: token " + ph + "\r\n\r\n");
  int woken = 0;
  EXPECT_TRUE(set->await_fresh(req, "api.github.test", false, [&] { ++woken; }));
  ASSERT_EQ(jobs.size(), 1u);
  // A request that does not carry the placeholder does not wait.
  auto other = parse("GET / HTTP/1.1\r\nHost: api.github.test\r\n\r\n");
  EXPECT_FALSE(set->await_fresh(other, "api.github.test", false, [] {}));
  // A second request needing it waits on the same refresh.
  EXPECT_TRUE(set->await_fresh(req, "api.github.test", false, [&] { ++woken; }));
  EXPECT_EQ(jobs.size(), 1u);
  jobs[0].second(set->source().read(jobs[0].first));
  EXPECT_EQ(woken, 2);
  EXPECT_FALSE(set->await_fresh(req, "api.github.test", false, [] {}));
  const auto v = set->inspect(req, "api.github.test");
  ASSERT_FALSE(v.blocked) << v.reason;
  EXPECT_EQ(req.header("authorization"), "token " + v2);
  // A failed refresh: the request goes on once (no endless wait) and is blocked as unavailable.
  ::unlink(file.c_str());
  ::sleep(1);
  auto again =
      parse("GET / HTTP/1.1\r\nHost: api.github.test\r\nAuthorization: token " + ph + "\r\n\r\n");
  EXPECT_TRUE(set->await_fresh(again, "api.github.test", false, [] {}));
  ASSERT_EQ(jobs.size(), 2u);
  jobs[1].second(set->source().read(jobs[1].first));
  EXPECT_FALSE(set->await_fresh(again, "api.github.test", false, [] {}));
  const auto blocked = set->inspect(again, "api.github.test");
  EXPECT_TRUE(blocked.blocked);
  EXPECT_NE(blocked.reason.find("unavailable"), std::string::npos) << blocked.reason;
  ::rmdir(dir);
}

TEST(Refresh, RotateRereadsNowWhateverTheTtl) {
  char dir[] = "/tmp/agentbox-rotate-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/token";
  const std::string v1 = "ghp_FirstValueOfTheTokenAAAA0123456789abcd";
  const std::string v2 = "ghp_SecondValueOfTheTokenBBB0123456789abcd";
  std::ofstream(file) << v1 << "\n";
  auto set = CredentialSet::load({{.name = "gh",
                                   .env = "GH_TOKEN",
                                   .from = policy::SourceSpec::file(file),
                                   .hosts = {"api.github.test"},
                                   .inject = agentbox::policy::InjectSpec::header("Authorization"),
                                   .ttl_seconds = 3600},
                                  {.name = "fixed",
                                   .env = "FIXED",
                                   .from = policy::SourceSpec::env("REAL_FIXED"),
                                   .hosts = {"api.github.test"},
                                   .inject = agentbox::policy::InjectSpec::header("X-Fixed")}},
                                 fake_env({{"REAL_FIXED", "fixed-secret-value-0123"}}), nullptr);
  ASSERT_TRUE(set) << set.error().message();
  const std::string ph = *set->placeholder("gh");
  std::vector<std::pair<policy::SourceSpec, std::function<void(base::Result<std::string>)>>> jobs;
  set->set_refresher(
      [&](policy::SourceSpec from, std::function<void(base::Result<std::string>)> done) {
        jobs.emplace_back(std::move(from), std::move(done));
        return true;
      });
  const std::string text =
      "GET / HTTP/1.1\r\nHost: api.github.test\r\nAuthorization: token " + ph + "\r\n\r\n";
  std::ofstream(file) << v2 << "\n";
  // Within its ttl the cached value is used: without a rotation the new file is not read.
  auto before = parse(text);
  EXPECT_FALSE(set->await_fresh(before, "api.github.test", false, [] {}));
  ASSERT_FALSE(set->inspect(before, "api.github.test").blocked);
  EXPECT_EQ(before.header("authorization"), "token " + v1);
  ASSERT_TRUE(set->rotate("gh"));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_TRUE(set->state()[0].refreshing);
  // A request during the re-read waits for it, then carries the new value.
  auto during = parse(text);
  int woken = 0;
  EXPECT_TRUE(set->await_fresh(during, "api.github.test", false, [&] { ++woken; }));
  jobs[0].second(set->source().read(jobs[0].first));
  EXPECT_EQ(woken, 1);
  EXPECT_FALSE(set->state()[0].refreshing);
  EXPECT_TRUE(set->state()[0].failure.empty()) << set->state()[0].failure;
  ASSERT_FALSE(set->inspect(during, "api.github.test").blocked);
  EXPECT_EQ(during.header("authorization"), "token " + v2);
  // A new value of another length cannot replace the placeholder the box holds: unavailable.
  std::ofstream(file) << v2 << "X\n";
  ASSERT_TRUE(set->rotate("gh"));
  ASSERT_EQ(jobs.size(), 2u);
  jobs[1].second(set->source().read(jobs[1].first));
  EXPECT_NE(set->state()[0].failure.find("changed length"), std::string::npos);
  // Unknown names and values read once at start are refused at once, saying why.
  auto unknown = set->rotate("nope");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("no credential `nope`"), std::string::npos);
  auto fixed = set->rotate("fixed");
  ASSERT_FALSE(fixed);
  EXPECT_NE(fixed.error().message().find("env:REAL_FIXED"), std::string::npos)
      << fixed.error().message();
  EXPECT_EQ(jobs.size(), 2u);
  ::unlink(file.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace agentbox::cred
