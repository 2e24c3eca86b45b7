// Host name grammar and label-wise wildcard matching.
#include "agentbox/policy/host.hpp"

#include <gtest/gtest.h>

namespace agentbox::policy {
namespace {

TEST(Host, NormalizeLowercasesAndStripsRootDot) {
  EXPECT_EQ(normalize_name("API.GitHub.com."), "api.github.com");
  EXPECT_EQ(normalize_name("_dmarc.example.com"), "_dmarc.example.com");
  EXPECT_EQ(normalize_name("localhost"), "localhost");
  EXPECT_EQ(normalize_name("xn--bcher-kva.example"), "xn--bcher-kva.example");
}

TEST(Host, NormalizeRejectsBadGrammar) {
  for (std::string_view bad :
       {std::string_view(""), std::string_view("."), std::string_view("a..b"),
        std::string_view(".a"), std::string_view("a.b.."), std::string_view("-a.com"),
        std::string_view("a-.com"), std::string_view("a b.com"),
        std::string_view("evil.com\0.example.com", 22), std::string_view("a.com/x"),
        std::string_view("a.com:80"), std::string_view("*.a.com"),
        std::string_view("a\xc3\xa9.com"), std::string_view("127.0.0.1"),
        std::string_view("2130706433"), std::string_view("foo.123")}) {
    EXPECT_FALSE(normalize_name(bad)) << bad;
  }
  EXPECT_FALSE(normalize_name(std::string(64, 'a') + ".com"));
  EXPECT_TRUE(normalize_name(std::string(63, 'a') + ".com"));
  std::string long_name;
  for (int i = 0; i < 64; ++i) {
    long_name += "abc.";
  }
  long_name += "com";  // 259 characters
  EXPECT_FALSE(normalize_name(long_name));
}

TEST(Host, ExactPattern) {
  auto p = HostPattern::parse("Example.com");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->matches("example.com"));
  EXPECT_FALSE(p->matches("www.example.com"));
  EXPECT_FALSE(p->matches("example.com.evil"));
  EXPECT_FALSE(p->matches("notexample.com"));
}

TEST(Host, WildcardMatchesOneOrMoreLabelsButNotTheBase) {
  auto p = HostPattern::parse("*.example.com");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->matches("a.example.com"));
  EXPECT_TRUE(p->matches("a.b.example.com"));
  EXPECT_FALSE(p->matches("example.com"));
  EXPECT_FALSE(p->matches("badexample.com"));
  EXPECT_FALSE(p->matches("a.example.com.evil.net"));
  EXPECT_FALSE(p->matches("a.examplexcom"));
}

TEST(Host, PatternGrammar) {
  EXPECT_FALSE(HostPattern::parse("*"));
  EXPECT_FALSE(HostPattern::parse("*."));
  EXPECT_FALSE(HostPattern::parse("a.*.com"));
  EXPECT_FALSE(HostPattern::parse("*a.com"));
  EXPECT_FALSE(HostPattern::parse("**.a.com"));
  EXPECT_FALSE(HostPattern::parse("a.com."));
  EXPECT_FALSE(HostPattern::parse(std::string_view("a.com\0", 6)));
  EXPECT_FALSE(HostPattern::parse("*.127.0.0.1"));
  EXPECT_EQ(HostPattern::parse("*.A.com")->to_string(), "*.a.com");
}

}  // namespace
}  // namespace agentbox::policy
