// Token files: values found by JSON path and regex, masked raw and JSON-escaped.
#include "agentbox/cred/token_file.hpp"

#include <gtest/gtest.h>

namespace agentbox::cred {
namespace {

const std::string kAuth = R"({
  "oauth": {"access_token": "sk-ant-oat01-REALaccess0123456789", "refresh_token": "rt-REALrefresh0123456789/x+y",
            "expires": 1234},
  "keys": ["first-key-value-1", "second-key-value-2"],
  "note": "the access token sk-ant-oat01-REALaccess0123456789 again"
})";

TEST(TokenFile, JsonPathsFindStringValuesAndSkipWhatIsMissing) {
  auto v = find_token_secrets(
      kAuth, {.json_fields = {"oauth.access_token", "oauth.refresh_token", "oauth.expires",
                              "keys.1", "missing.path", "keys.9"}});
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, (std::vector<std::string>{"sk-ant-oat01-REALaccess0123456789",
                                          "rt-REALrefresh0123456789/x+y", "second-key-value-2"}));
}

TEST(TokenFile, RegexFirstGroupsEveryMatch) {
  std::string netrc =
      "machine a.example login me password pw-REALvalue-0001\n"
      "machine b.example login me password pw-REALvalue-0002\n";
  auto v = find_token_secrets(netrc, {.regexes = {"password (\\S+)"}});
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, (std::vector<std::string>{"pw-REALvalue-0001", "pw-REALvalue-0002"}));
}

TEST(TokenFile, RefusesWhatCannotBeMaskedSafely) {
  EXPECT_FALSE(find_token_secrets("not json", {.json_fields = {"a"}}));
  EXPECT_FALSE(find_token_secrets(R"({"a": "short"})", {.json_fields = {"a"}}));
  EXPECT_FALSE(find_token_secrets("x", {.regexes = {"(unclosed"}}));
}

TEST(TokenFile, MaskingReplacesEveryOccurrenceRawAndEscaped) {
  const std::string secret = "tok/SECRETMARK\"quote-0123456789";
  const std::string placeholder = "ph/placeholder\"value-00000";
  // The same value as one writer escapes it ("\/"), as another does, and raw.
  std::string text =
      R"({"a": "tok\/SECRETMARK\"quote-0123456789", "b": "tok/SECRETMARK\"quote-0123456789"})";
  text += "\n" + secret + "\n";
  std::string masked = mask_token_text(text, {{secret, placeholder}});
  EXPECT_EQ(masked.find("SECRETMARK"), std::string::npos) << masked;
  EXPECT_NE(masked.find(R"("a": "ph\/placeholder\"value-00000")"), std::string::npos) << masked;
  EXPECT_NE(masked.find(R"("b": "ph/placeholder\"value-00000")"), std::string::npos) << masked;

  auto v = find_token_secrets(kAuth, {.json_fields = {"oauth.access_token"}});
  ASSERT_TRUE(v);
  std::string out = mask_token_text(kAuth, {{(*v)[0], "sk-ant-oat01-PLACEHOLDER0123456"}});
  EXPECT_EQ(out.find("REALaccess"), std::string::npos) << out;
  EXPECT_NE(out.find("\"expires\": 1234"), std::string::npos) << "formatting kept: " << out;
}

}  // namespace
}  // namespace agentbox::cred
