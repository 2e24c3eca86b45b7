// `profile suggest`: audit lines in, a profile out that agentbox's own loader accepts and that
// grants exactly what was refused; names from the box cannot add lines of their own.
#include "agentbox/app/profile_suggest.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "agentbox/config/load.hpp"

namespace agentbox::app {
namespace {

std::string line(const std::string& type, const std::string& fields) {
  return R"({"v":1,"ts":"2026-12-07T11:00:00.000Z","session":"S-abcdef","type":")" + type + "\"" +
         (fields.empty() ? "" : "," + fields) + "}";
}

// The suggestion saved as a profile and loaded the way `run --profile` loads one.
base::Result<config::Loaded> load_as_profile(const std::string& text) {
  char dir[] = "/tmp/agentbox-suggest-XXXXXX";
  if (::mkdtemp(dir) == nullptr) {
    return base::Error::sys(errno, "mkdtemp");
  }
  const std::string file = std::string(dir) + "/suggested.toml";
  std::ofstream(file) << text;
  config::LoadOptions o;
  o.flags.profiles = {"suggested"};
  o.profile_dirs = {dir};
  o.system_file = std::string(dir) + "/none.toml";
  o.user_dir = std::string(dir) + "/user";
  o.no_user_config = true;
  auto loaded = config::load(o);
  ::unlink(file.c_str());
  ::rmdir(dir);
  return loaded;
}

bool has(const std::vector<config::Sourced<std::string>>& list, const std::string& v) {
  return std::any_of(list.begin(), list.end(), [&](const auto& s) { return s.value == v; });
}

TEST(ProfileSuggest, GrantsWhatWasRefusedAndLoadsAsAProfile) {
  ProfileSuggestion s;
  s.feed(line("session.start", R"("session":"S-abcdef","argv":["claude"],"workspace":"/w")"));
  s.feed(line(
      "dns.query",
      R"("name":"pypi.org","qtype":"A","result":"denied","reason":"no rule allows this name")"));
  s.feed(line(
      "dns.query",
      R"("name":"pypi.org","qtype":"AAAA","result":"denied","reason":"no rule allows this name")"));
  s.feed(line(
      "net.deny",
      R"("proto":"tcp","name":"git.example.org","dst":"203.0.113.7","port":22,"reason":"no rule allows this name")"));
  s.feed(line(
      "net.deny",
      R"("proto":"tcp","name":"10.1.2.3","dst":"10.1.2.3","port":8080,"reason":"private address 10.1.2.3 needs a CIDR rule naming it")"));
  s.feed(line(
      "net.deny",
      R"("proto":"tcp","name":"evil.example","dst":"198.51.100.1","port":443,"reason":"denied at run time by `evil.example`")"));
  s.feed(line(
      "http.request",
      R"("host":"api.example.com","method":"DELETE","path":"/v1/x","decision":"denied","rule":"api.example.com at config.toml:3:1","reason":"DELETE https://api.example.com/v1/x denied by rule r")"));
  s.feed(line("seccomp.deny", R"("syscall":"ptrace","exe":"/usr/bin/strace")"));
  s.feed(line("seccomp.deny", R"("syscall":"kexec_load","exe":"/x")"));
  s.feed("not json at all");
  const std::string text = s.render();
  auto loaded = load_as_profile(text);
  ASSERT_TRUE(loaded) << loaded.error().message() << "\n" << text;
  const auto& p = loaded->policy;
  EXPECT_TRUE(has(p.net_allow, "pypi.org")) << text;
  EXPECT_TRUE(has(p.net_allow, "git.example.org:22")) << text;
  EXPECT_TRUE(has(p.net_allow, "10.1.2.3/32:8080")) << text;
  EXPECT_FALSE(has(p.net_allow, "evil.example")) << "a run-time deny is the user's: " << text;
  EXPECT_TRUE(has(p.seccomp_allow, "ptrace")) << text;
  ASSERT_EQ(p.http_rules.size(), 1u) << text;
  EXPECT_EQ(p.http_rules[0].host, "api.example.com");
  EXPECT_EQ(p.http_rules[0].methods, std::vector<std::string>{"DELETE"});
  EXPECT_EQ(p.http_rules[0].paths, std::vector<std::string>{"/v1/x"});
  // What no rule grants is said, as a comment.
  EXPECT_NE(text.find("#   \"syscall kexec_load\""), std::string::npos) << text;
  EXPECT_NE(text.find("refusal"), std::string::npos);
}

TEST(ProfileSuggest, NamesAndPathsFromTheBoxCannotAddLines) {
  ProfileSuggestion s;
  // A path and a program with newlines and TOML, as a hostile box would send them.
  s.feed(line(
      "http.request",
      R"("host":"api.example.com","method":"GET","path":"/a\n[credentials.x]\nfrom = \"env:HOME\"\n","decision":"denied","rule":"r\n[seccomp]","reason":"GET x denied by rule r")"));
  s.feed(line("seccomp.deny", R"("syscall":"ptrace","exe":"/x\n[network]\nallow=[\"*\"]")"));
  s.feed(line(
      "dns.query",
      R"("name":"a\nb.example","qtype":"A","result":"denied","reason":"no rule allows this name")"));
  s.feed(line("session.start", R"("argv":["sh\u001b]52;c;x\u0007"],"workspace":"/w\r")"));
  const std::string text = s.render();
  for (char c : text) {
    ASSERT_TRUE(c == '\n' || (c >= 0x20 && c < 0x7f)) << "byte " << int(c) << " in\n" << text;
  }
  auto loaded = load_as_profile(text);
  ASSERT_TRUE(loaded) << loaded.error().message() << "\n" << text;
  EXPECT_TRUE(loaded->policy.net_allow.empty()) << text;
  ASSERT_EQ(loaded->policy.http_rules.size(), 1u);
  EXPECT_EQ(loaded->policy.http_rules[0].paths[0], "/a\n[credentials.x]\nfrom = \"env:HOME\"\n");
  EXPECT_EQ(text.find("\n[credentials"), std::string::npos) << text;
}

TEST(ProfileSuggest, WhatALearningRunAdmittedIsSuggested) {
  ProfileSuggestion s;
  s.feed(line(
      "learn.allow",
      R"("id":"","kind":"host","subject":"npm.example","detail":"npm.example","answer":"session")"));
  s.feed(line(
      "learn.allow",
      R"("id":"","kind":"exec","subject":"/usr/bin/git","detail":"git push -f","answer":"once")"));
  const std::string text = s.render();
  auto loaded = load_as_profile(text);
  ASSERT_TRUE(loaded) << loaded.error().message() << "\n" << text;
  EXPECT_TRUE(has(loaded->policy.net_allow, "npm.example")) << text;
  EXPECT_NE(text.find("admitted by --learn"), std::string::npos) << text;
  EXPECT_NE(text.find("#   \"exec /usr/bin/git\""), std::string::npos) << text;
}

TEST(ProfileSuggest, LearnedPathGlobsCollapseObjectsOnly) {
  EXPECT_EQ(learned_path_glob("/v1/items/123"), "/v1/items/*");
  EXPECT_EQ(learned_path_glob("/v1/items/123?expand=1#x"), "/v1/items/*");
  EXPECT_EQ(learned_path_glob("/v1/items"), "/v1/items");
  EXPECT_EQ(learned_path_glob("/v1/items/"), "/v1/items/");
  EXPECT_EQ(learned_path_glob(""), "/");
  EXPECT_EQ(learned_path_glob("/"), "/");
  EXPECT_EQ(learned_path_glob("/users/4f1c2a9e-0b7d-4c3e-9a1f-2b3c4d5e6f70/keys"), "/users/*/keys");
  EXPECT_EQ(learned_path_glob("/repo/git/commits/0123456789abcdef0123456789abcdef01234567"),
            "/repo/git/commits/*");
  EXPECT_EQ(learned_path_glob("/s/AbCdEf0123456789_-xyZ/raw"), "/s/*/raw");
  // Words stay, even all-hex ones without a digit, and short tokens and file names.
  EXPECT_EQ(learned_path_glob("/feed/cafe/added/v2/package-lock.json"),
            "/feed/cafe/added/v2/package-lock.json");
  EXPECT_EQ(learned_path_glob("/a/abc123"), "/a/abc123");
  // A `*` from the box is a glob already: its segment becomes one, never wider than a segment.
  EXPECT_EQ(learned_path_glob("/a/**/b"), "/a/*/b");
}

TEST(ProfileSuggest, ALearningRunGivesPortsAndOneRulePerMethod) {
  ProfileSuggestion s;
  s.feed(line("session.start", R"("argv":["agent"],"workspace":"/w","learn":true)"));
  s.feed(line(
      "learn.allow",
      R"("id":"","kind":"host","subject":"api.example","detail":"api.example","answer":"session")"));
  s.feed(line(
      "learn.allow",
      R"("id":"","kind":"port","subject":"api.example","detail":"api.example:8443","answer":"session")"));
  s.feed(line("net.connect", R"("id":1,"name":"api.example","port":443,"rule":"api.example")"));
  s.feed(
      line("net.connect", R"("id":2,"name":"api.example","port":8443,"rule":"api.example:8443")"));
  s.feed(line("net.connect", R"("id":3,"name":"ruled.example","port":443,"rule":"ruled.example")"));
  s.feed(line("net.connect", R"("id":4,"name":"api.example","port":443,"rule":"api.example")"));
  for (
      const char* req :
      {R"("id":1,"host":"api.example","method":"GET","path":"/v1/items/123","rule":"api.example")",
       R"("id":4,"host":"api.example","method":"GET","path":"/v1/items/77?x=1","rule":"api.example")",
       R"("id":2,"host":"api.example","method":"POST","path":"/v1/items","rule":"api.example:8443")",
       // Named by an HTTP rule of the config: that rule already decides.
       R"x("id":3,"host":"ruled.example","method":"GET","path":"/x","rule":"ruled.example (c:1:1)")x",
       // Refused, or cut short: not learned.
       R"("id":1,"host":"api.example","method":"DELETE","path":"/v1/items/1","rule":"api.example","decision":"denied")",
       R"("id":1,"host":"api.example","method":"PUT","path":"/v1/items/1","rule":"api.example","decision":"aborted")"}) {
    std::string fields = req;
    if (fields.find("decision") == std::string::npos) {
      fields += R"(,"decision":"allowed")";
    }
    s.feed(line("http.request", fields));
  }
  const std::string text = s.render();
  auto loaded = load_as_profile(text);
  ASSERT_TRUE(loaded) << loaded.error().message() << "\n" << text;
  const auto& p = loaded->policy;
  EXPECT_TRUE(has(p.net_allow, "api.example:443")) << text;
  EXPECT_TRUE(has(p.net_allow, "api.example:8443")) << text;
  EXPECT_FALSE(has(p.net_allow, "api.example")) << "ports seen are the ports granted: " << text;
  ASSERT_EQ(p.http_rules.size(), 2u) << text;
  EXPECT_EQ(p.http_rules[0].host, "api.example");
  EXPECT_EQ(p.http_rules[0].methods, std::vector<std::string>{"GET"});
  EXPECT_EQ(p.http_rules[0].paths, std::vector<std::string>{"/v1/items/*"});
  EXPECT_EQ(p.http_rules[1].methods, std::vector<std::string>{"POST"});
  EXPECT_EQ(p.http_rules[1].paths, std::vector<std::string>{"/v1/items"});
  EXPECT_NE(text.find("2 connections on port 443"), std::string::npos) << text;
  EXPECT_EQ(text.find("ruled.example"), std::string::npos) << "an HTTP rule decides: " << text;
  // The same log without the learning flag suggests no rule: only a learning run intercepts all.
  ProfileSuggestion plain;
  plain.feed(
      line("http.request",
           R"("host":"api.example","method":"GET","path":"/v1","rule":"","decision":"allowed")"));
  EXPECT_TRUE(plain.empty());
}

TEST(ProfileSuggest, NothingRefusedSaysSo) {
  ProfileSuggestion s;
  s.feed(line("dns.query", R"("name":"ok.example","qtype":"A","result":"allowed")"));
  EXPECT_TRUE(s.empty());
  EXPECT_NE(s.render().find("refused nothing a rule can grant"), std::string::npos);
  EXPECT_FALSE(suggest_from_log("/nonexistent/audit.jsonl"));
}

}  // namespace
}  // namespace agentbox::app
