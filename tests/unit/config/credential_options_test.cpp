// [credentials.NAME] `format`, `body` and the budgets: parsed, and every bad value reported at
// file:line:col.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agentbox/config/load.hpp"

namespace agentbox::config {
namespace {

namespace fs = std::filesystem;

class CredentialOptions : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-credopt-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  base::Result<Policy> load_text(const std::string& text) {
    const std::string file = dir_ + "/system.toml";
    std::ofstream(file) << text;
    LoadOptions o;
    o.system_file = file;
    o.user_dir = dir_ + "/user";
    auto r = load(o);
    if (!r) {
      return std::move(r).error();
    }
    return std::move(r->policy);
  }
  std::string dir_;
};

const char* kHead =
    "[credentials.api]\n"
    "env = \"API_KEY\"\n"
    "from = \"env:REAL\"\n"
    "hosts = [\"api.example.com\"]\n";
const char* kRule =
    "[[network.rule]]\n"
    "host = \"api.example.com\"\n"
    "methods = [\"POST\"]\n"
    "paths = [\"/v1/messages\"]\n";

TEST_F(CredentialOptions, FormatAndBodyAreParsed) {
  auto p = load_text(std::string(kHead) + "format = \"Bearer {}\"\nbody = true\n" + kRule);
  ASSERT_TRUE(p) << p.error().render();
  const Credential& c = p->credentials.at("api");
  EXPECT_EQ(c.format, "Bearer {}");
  EXPECT_TRUE(c.body);
  EXPECT_EQ(c.inject.to_string(), "header:Authorization");
  auto q = load_text(kHead);
  ASSERT_TRUE(q) << q.error().render();
  EXPECT_EQ(q->credentials.at("api").format, "");  // unset: nothing is ever added
  EXPECT_FALSE(q->credentials.at("api").body);
}

// A store-and-read-back API on the scoped host would return the secret: `body = true` needs
// rules naming the methods and paths for every host of the credential.
TEST_F(CredentialOptions, BodyNeedsARuleWithMethodsAndPathsForEveryHost) {
  const std::string body = std::string(kHead) + "body = true\n";
  struct Case {
    std::string rules;
    bool ok;
  } cases[] = {
      {"", false},
      {kRule, true},
      {"[[network.rule]]\nhost = \"api.example.com\"\nmethods = [\"POST\"]\n", false},
      {"[[network.rule]]\nhost = \"api.example.com\"\npaths = [\"/v1/**\"]\n", false},
      {std::string(kRule) + "[[network.rule]]\nhost = \"api.example.com\"\n", false},
      {"[[network.rule]]\nhost = \"other.example.com\"\nmethods = [\"POST\"]\n"
       "paths = [\"/x\"]\n",
       false},
  };
  for (const auto& c : cases) {
    auto p = load_text(body + c.rules);
    EXPECT_EQ(p.has_value(), c.ok) << c.rules;
    if (!p) {
      const std::string msg = p.error().render();
      EXPECT_NE(msg.find("system.toml:5:8"), std::string::npos) << msg;
      EXPECT_NE(msg.find("needs an HTTP rule with `methods` and `paths`"), std::string::npos)
          << msg;
      EXPECT_NE(msg.find("api.example.com"), std::string::npos) << msg;
    }
  }
}

TEST_F(CredentialOptions, BadValuesNameTheLineAndColumn) {
  struct Case {
    std::string extra;
    std::string where;
    std::string what;
  } cases[] = {
      {"format = \"Bearer\"\n", ":5:10", "exactly once"},
      {"format = \"{} {}\"\n", ":5:10", "exactly once"},
      {"format = \"Bearer {}\\r\\nX-Evil: 1\"\n", ":5:10", "CR, LF"},
      {"inject = \"header:X Api\"\n", ":5:10", "not a header name"},
      {"inject = \"header:X:Api\"\n", ":5:10", "not a header name"},
      {"inject = \"basic\"\nformat = \"Bearer {}\"\n", ":6:10", "only to inject"},
      {"inject = \"sigv4\"\nbody = true\n", ":5:10", "SigV4"},
      {"body = \"yes\"\n", ":5:8", "true or false"},
  };
  for (const auto& c : cases) {
    auto p = load_text(std::string(kHead) + c.extra);
    ASSERT_FALSE(p) << c.extra;
    const std::string msg = p.error().render();
    EXPECT_NE(msg.find("system.toml" + c.where), std::string::npos) << c.extra << "\n" << msg;
    EXPECT_NE(msg.find(c.what), std::string::npos) << c.extra << "\n" << msg;
  }
}

TEST_F(CredentialOptions, BudgetsAreParsedAndBadOnesNamed) {
  auto p = load_text(std::string(kHead) +
                     "max_requests = 100\nmax_bytes = \"10M\"\nmethods = [\"GET\", \"HEAD\"]\n"
                     "expires = \"2h\"\n");
  ASSERT_TRUE(p) << p.error().render();
  const Credential& c = p->credentials.at("api");
  EXPECT_EQ(c.max_requests, 100u);
  EXPECT_EQ(c.max_bytes, 10u << 20);
  EXPECT_EQ(c.methods, (std::vector<std::string>{"GET", "HEAD"}));
  EXPECT_EQ(c.expires_seconds, 7200u);
  auto unset = load_text(kHead);
  ASSERT_TRUE(unset);
  EXPECT_FALSE(unset->credentials.at("api").max_requests);
  EXPECT_FALSE(unset->credentials.at("api").expires_seconds);
  for (const auto& [extra, what] : std::vector<std::pair<std::string, std::string>>{
           {"methods = [\"get\"]\n", "`get` is not an HTTP method"},
           {"methods = [\"GET /x\"]\n", "is not an HTTP method"},
           {"max_bytes = 10\n", "a size needs a unit"},
           {"expires = \"soon\"\n", "invalid duration"},
           {"max_requests = -1\n", "max_requests"}}) {
    auto bad = load_text(std::string(kHead) + extra);
    ASSERT_FALSE(bad) << extra;
    const std::string msg = bad.error().render();
    EXPECT_NE(msg.find("system.toml:5:"), std::string::npos) << extra << "\n" << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << extra << "\n" << msg;
  }
}

}  // namespace
}  // namespace agentbox::config
