// HTTP rules (globs, per-host allow-lists, audit paths) and the scrubber's streaming hold.
#include "agentbox/http/http_rules.hpp"

#include <gtest/gtest.h>

#include "agentbox/cred/credentials.hpp"

namespace agentbox::cred {
namespace {

TEST(Glob, StarStaysInSegmentDoubleStarCrosses) {
  EXPECT_TRUE(http::glob_match("/v1/*", "/v1/messages"));
  EXPECT_FALSE(http::glob_match("/v1/*", "/v1/a/b"));
  EXPECT_TRUE(http::glob_match("/v1/**", "/v1/a/b"));
  EXPECT_TRUE(http::glob_match("/v1/**", "/v1/"));
  EXPECT_FALSE(http::glob_match("/v1/**", "/v1"));
  EXPECT_FALSE(http::glob_match("/v1/**", "/v2/x"));
  EXPECT_TRUE(http::glob_match("/docs/*/intro", "/docs/x/intro"));
  EXPECT_FALSE(http::glob_match("/docs/*/intro", "/docs/x/y/intro"));
  EXPECT_TRUE(http::glob_match("/a*c", "/abbbc"));
  EXPECT_TRUE(http::glob_match("**", "/anything/at/all"));
  EXPECT_FALSE(http::glob_match("/exact", "/exact/"));
  // Pathological patterns stay polynomial.
  EXPECT_FALSE(http::glob_match("/*a*a*a*a*a*a*a*b", "/" + std::string(200, 'a')));
}

TEST(Paths, TargetAndAuditForms) {
  EXPECT_EQ(http::target_path("/a/b?x=1#f"), "/a/b");
  EXPECT_EQ(http::target_path("https://h.test/a?q"), "/a");
  EXPECT_EQ(http::target_path("https://h.test"), "/");
  EXPECT_EQ(http::target_path("*"), "*");
  EXPECT_EQ(http::audit_path("/s?q=secret&x&token=abc#frag"), "/s?q=&x&token=");
  EXPECT_EQ(http::audit_path("/plain"), "/plain");
  EXPECT_LE(http::audit_path("/" + std::string(5000, 'a')).size(), 512u);
}

TEST(HttpRules, AllowListPerHost) {
  auto rules = http::HttpRules::create({
      {.origin = "a.toml:1:1", .host = "api.test", .methods = {"get"}, .paths = {"/v1/**"}},
      {.origin = "a.toml:5:1",
       .host = "api.test",
       .methods = {"POST"},
       .paths = {"/v1/messages"},
       .max_body = 100},
      {.origin = "a.toml:9:1", .host = "*.docs.test"},
  });
  ASSERT_TRUE(rules.has_value());
  auto v = rules->check("api.test", "GET", "/v1/models?x=1");
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.rule, "a.toml:1:1");
  v = rules->check("api.test", "POST", "/v1/messages");
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.max_body, 100u);
  v = rules->check("api.test", "DELETE", "/v1/x");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.rule, "a.toml:1:1, a.toml:5:1");
  v = rules->check("api.test", "GET", "/v1/../admin");
  EXPECT_FALSE(v.allowed);
  EXPECT_FALSE(v.why.empty());
  EXPECT_FALSE(rules->check("api.test", "GET", "/v1/%2e%2e/admin").allowed);
  EXPECT_FALSE(rules->check("api.test", "GET", "/v1/a%2fb").allowed);
  EXPECT_TRUE(rules->check("x.docs.test", "PATCH", "/anything").allowed);
  EXPECT_FALSE(rules->check("docs.test", "GET", "/").named);
  EXPECT_TRUE(rules->names("api.test"));
  EXPECT_FALSE(rules->names("other.test"));
  EXPECT_EQ(rules->host_patterns(), (std::vector<std::string>{"*.docs.test", "api.test"}));
  EXPECT_FALSE(http::HttpRules::create({{.origin = "x", .host = "bad host"}}).has_value());
}

// Under `GET /allowed/**`, every spelling an upstream may normalise out of the glob is refused
// (docs/PROXY.md, "Path spellings refused under a glob"), and ordinary paths still pass.
TEST(HttpRules, PathSpellingsUpstreamsNormaliseAreRefused) {
  auto rules = http::HttpRules::create(
      {{.origin = "a.toml:1:1", .host = "api.test", .methods = {"GET"}, .paths = {"/allowed/**"}}});
  ASSERT_TRUE(rules.has_value());
  const char* refused[] = {
      "/allowed/..;/admin",                 // Tomcat/Jetty path parameter on a dot segment
      "/allowed/.;x/../admin",              //
      "/allowed/..;jsessionid=1/x",         //
      "/allowed/x#/../../admin",            // a fragment: cut by some, kept by others
      "/allowed/%252e%252e/admin",          // double encoding
      "/allowed/%252E%252E/admin",          //
      "/allowed/%255c../admin",             //
      "/allowed/../admin",                  // dot segments, raw
      "/allowed/./x",                       //
      "/allowed/%2e%2e/admin",              // ... and encoded, any case, any mix
      "/allowed/%2E%2e/admin",              //
      "/allowed/.%2e/admin",                //
      "/allowed/%2e./admin",                //
      "/allowed/%2e/x",                     //
      "/allowed/%2e%2e;x/admin",            //
      "/allowed/.%00/admin",                // encoded NUL and other control bytes
      "/allowed/x%00.json",                 //
      "/allowed/x%0d%0aHost:evil",          //
      "/allowed/...",                       // Windows drops trailing dots and spaces
      "/allowed/.. /admin",                 //
      "/allowed/..%20/admin",               //
      "/allowed/x\\..\\..\\admin",          // backslashes, raw and encoded
      "/allowed/x%5c..%5cadmin",            //
      "/allowed/x%5C..%5Cadmin",            //
      "/allowed/x%2f..%2f..%2fadmin",       // encoded slash
      "/allowed/x%2F..%2Fadmin",            //
      "/allowed/%c0%ae%c0%ae/admin",        // overlong UTF-8 dots and slash
      "/allowed/%c0%af../admin",            //
      "/allowed/%e0%80%ae%e0%80%ae/x",      //
      "/allowed/%u002e%u002e/admin",        // IIS %u escapes
      "/allowed//../admin",                 // empty segments (collapsed by some)
      "/allowed//x",                        //
      "/allowed/x%zz",                      // a stray %
      "/allowed/x%",                        //
      "http://api.test/allowed/..;/admin",  // absolute form: the same checks
  };
  for (const char* target : refused) {
    const auto v = rules->check("api.test", "GET", target);
    EXPECT_FALSE(v.allowed) << target;
    EXPECT_FALSE(v.why.empty()) << target;
  }
  const char* allowed[] = {
      "/allowed/x",       "/allowed/x/y.json",   "/allowed/a.b/c..d",  "/allowed/x%20y",
      "/allowed/%41bc",   "/allowed/file%2etxt", "/allowed/x;v=1",     "/allowed/x?a=..%2f",
      "/allowed/.well-x", "/allowed/x?q=%252e",  "/allowed/%e2%82%ac", "/allowed/..x",
  };
  for (const char* target : allowed) {
    EXPECT_TRUE(rules->check("api.test", "GET", target).allowed) << target;
  }
}

TEST(Scrubber, HoldsOnlyWhatCouldStartASecret) {
  Scrubber s;
  s.add("sk-secret-123", "sk-placeh-987");
  EXPECT_EQ(s.feed("data: one\n\n"), "data: one\n\n");  // nothing held: SSE streams at once
  EXPECT_EQ(s.held(), 0u);
  EXPECT_EQ(s.feed("token sk-sec"), "token ");
  EXPECT_EQ(s.held(), 6u);
  EXPECT_EQ(s.feed("ret-123 end"), "sk-placeh-987 end");
  EXPECT_EQ(s.feed("x s"), "x ");
  EXPECT_EQ(s.finish(), "s");  // a prefix that never completed goes out unchanged
}

TEST(Scrubber, LongestNeedleFirst) {
  Scrubber s;
  s.add("abc", "xyz");
  s.add("--abc--", "==pqr==");
  std::string out = s.feed("--abc--");  // (two statements: feed must run before finish)
  out += s.finish();
  EXPECT_EQ(out, "==pqr==");  // not "--xyz--"
}

}  // namespace
}  // namespace agentbox::cred
