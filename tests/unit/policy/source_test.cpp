// A secret source's grammar: every form, every error with its message.
#include "agentbox/policy/source.hpp"

#include <gtest/gtest.h>

namespace agentbox::policy {
namespace {

TEST(Source, ParsesEveryForm) {
  EXPECT_EQ(*SourceSpec::parse("env:GITHUB_TOKEN"), SourceSpec::env("GITHUB_TOKEN"));
  EXPECT_EQ(*SourceSpec::parse("env:_x1"), SourceSpec::env("_x1"));
  EXPECT_EQ(*SourceSpec::parse("file:/etc/key"), SourceSpec::file("/etc/key"));
  EXPECT_EQ(*SourceSpec::parse("file:~/.anthropic-key"), SourceSpec::file("~/.anthropic-key"));
  // Only the first colon separates: the rest is the argument, colons and spaces included.
  EXPECT_EQ(*SourceSpec::parse("cmd:pass show a:b | head -1"),
            SourceSpec::cmd("pass show a:b | head -1"));
  EXPECT_EQ(*SourceSpec::parse("file:/a:b"), SourceSpec::file("/a:b"));
}

TEST(Source, WritesBackAsWritten) {
  for (const char* s : {"env:K", "file:~/k", "file:/k", "cmd:echo hi"}) {
    auto spec = SourceSpec::parse(s);
    ASSERT_TRUE(spec) << s;
    EXPECT_EQ(spec->to_string(), s);
  }
  EXPECT_EQ(SourceSpec::env("K").kind_name(), "env");
  EXPECT_EQ(SourceSpec::file("/k").kind_name(), "file");
  EXPECT_EQ(SourceSpec::cmd("x").kind_name(), "cmd");
}

TEST(Source, EveryErrorSaysWhatIsWrong) {
  const std::pair<const char*, const char*> cases[] = {
      {"token", "`token` is not env:NAME, file:PATH or cmd:COMMAND"},
      {"vault:x", "`vault:x` is not env:NAME, file:PATH or cmd:COMMAND"},
      {"ENV:X", "`ENV:X` is not env:NAME, file:PATH or cmd:COMMAND"},
      {"", "`` is not env:NAME, file:PATH or cmd:COMMAND"},
      {"env:", "`env:`: names no variable"},
      {"env:1X", "`env:1X`: `1X` is not a variable name"},
      {"env:A-B", "`env:A-B`: `A-B` is not a variable name"},
      {"file:", "`file:`: the path must be absolute or start with ~"},
      {"file:key.txt", "`file:key.txt`: the path must be absolute or start with ~"},
      {"cmd:", "`cmd:`: names no command"},
  };
  for (const auto& [text, message] : cases) {
    auto spec = SourceSpec::parse(text);
    ASSERT_FALSE(spec) << text;
    EXPECT_EQ(spec.error().message(), message) << text;
  }
}

TEST(Source, EnvNames) {
  EXPECT_TRUE(is_env_name("A"));
  EXPECT_TRUE(is_env_name("a_1"));
  EXPECT_FALSE(is_env_name(""));
  EXPECT_FALSE(is_env_name("1a"));
  EXPECT_FALSE(is_env_name("a.b"));
  EXPECT_FALSE(is_env_name("a b"));
}

}  // namespace
}  // namespace agentbox::policy
