// Placeholders: shapes, lengths, alphabets, randomness; the base64 codecs.
#include "agentbox/cred/placeholder.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace agentbox::cred {
namespace {

constexpr std::string_view kBase62 =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

std::string make(std::string_view real, std::string_view prefix = {}) {
  auto p = make_placeholder(real, prefix);
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message());
  EXPECT_EQ(p->size(), real.size());
  EXPECT_NE(*p, real);
  return p ? *p : std::string();
}

bool all_in(std::string_view s, std::string_view alphabet) {
  return s.find_first_not_of(alphabet) == std::string_view::npos;
}

TEST(Placeholder, GithubClassic) {
  const std::string real = "ghp_" + std::string("aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5");
  ASSERT_EQ(real.size(), 40u);
  EXPECT_EQ(placeholder_shape(real), "github");
  const auto p = make(real);
  EXPECT_EQ(p.substr(0, 4), "ghp_");
  EXPECT_TRUE(all_in(p.substr(4), kBase62));
  EXPECT_NE(make(real), p) << "two placeholders for one secret must differ";
  for (const char* pre : {"gho_", "ghu_", "ghs_", "ghr_", "npm_"}) {
    EXPECT_EQ(make(pre + real.substr(4)).substr(0, 4), pre);
  }
}

TEST(Placeholder, GithubFineGrainedKeepsSeparator) {
  const std::string real = "github_pat_" + std::string(22, 'A') + "_" + std::string(59, 'b');
  const auto p = make(real);
  EXPECT_EQ(p.substr(0, 11), "github_pat_");
  EXPECT_EQ(p[33], '_');
  EXPECT_TRUE(all_in(p.substr(11, 22), kBase62));
}

TEST(Placeholder, AnthropicAndOpenAi) {
  const std::string ant = "sk-ant-api03-" + std::string(40, 'x') + "-Y_z" + std::string(20, '9');
  const auto p = make(ant);
  EXPECT_EQ(p.substr(0, 13), "sk-ant-api03-");
  EXPECT_EQ(p[53], '-');
  EXPECT_EQ(p[55], '_');
  EXPECT_EQ(placeholder_shape("sk-proj-abcdefghij1234567890"), "openai-project");
  EXPECT_EQ(make("sk-proj-abcdefghij1234567890").substr(0, 8), "sk-proj-");
  EXPECT_EQ(make("sk-abcdefghij1234567890ABCD").substr(0, 3), "sk-");
}

TEST(Placeholder, Aws) {
  const auto id = make("AKIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(id.substr(0, 4), "AKIA");
  EXPECT_TRUE(all_in(id.substr(4), "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
  const std::string secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  EXPECT_EQ(placeholder_shape(secret), "aws-secret-key");
  EXPECT_TRUE(
      all_in(make(secret), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"));
}

TEST(Placeholder, SlackKeepsDigitRuns) {
  const std::string real = "xoxb-1234567890-0987654321098-AbCdEfGhIjKlMnOpQrStUvWx";
  const auto p = make(real);
  EXPECT_EQ(p.substr(0, 5), "xoxb-");
  EXPECT_TRUE(all_in(p.substr(5, 10), "0123456789"));
  EXPECT_EQ(p[15], '-');
  EXPECT_EQ(p[29], '-');
  EXPECT_EQ(make("glpat-abcdEFGH1234ijklMNOP").substr(0, 6), "glpat-");
}

TEST(Placeholder, JwtStaysParseable) {
  const std::string header = base64_encode(R"({"alg":"HS256","typ":"JWT"})", true);
  const std::string payload = base64_encode(
      R"({"sub":"1234567890","name":"John Doe","exp":1900000000,"admin":true})", true);
  const std::string real = header + "." + payload + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
  EXPECT_EQ(placeholder_shape(real), "jwt");
  const auto p = make(real);
  const size_t d1 = p.find('.');
  const size_t d2 = p.find('.', d1 + 1);
  ASSERT_NE(d2, std::string::npos);
  EXPECT_EQ(p.substr(0, d1), header);
  EXPECT_EQ(d2 - d1 - 1, payload.size());
  auto json = base64_decode(p.substr(d1 + 1, d2 - d1 - 1), true);
  ASSERT_TRUE(json.has_value());
  EXPECT_EQ(json->substr(0, 18), R"({"exp":1900000000,)");
  EXPECT_EQ(json->back(), '}');
  EXPECT_NE(p.substr(d2 + 1), real.substr(real.rfind('.') + 1));
}

TEST(Placeholder, GenericKeepsRunAlphabetsNotPositions) {
  const auto hex = make("0123456789abcdef0123456789abcdef");
  EXPECT_TRUE(all_in(hex, "0123456789abcdef"));
  const auto uuidish = make("1b4e28ba-2fa1-11d2-883f-0016d3cca427");
  EXPECT_EQ(uuidish[8], '-');
  EXPECT_EQ(uuidish[13], '-');
  // Digits-only positions are not copied per position: over many draws letters appear where
  // the real value had digits.
  std::set<char> seen;
  for (int i = 0; i < 20; ++i) {
    seen.insert(make("a1b2c3d4e5f6g7h8")[1]);
  }
  EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [](char c) { return c >= 'a'; }));
  EXPECT_EQ(make("secretvalue123", "my-").substr(0, 3), "my-");
}

TEST(Placeholder, RefusesShortSecrets) {
  EXPECT_FALSE(make_placeholder("short").has_value());
  EXPECT_FALSE(make_placeholder("longenough", "longenough").has_value());
}

TEST(Base64, RoundTripAndStrictness) {
  for (const std::string s : {"", "a", "ab", "abc", "abcd", "x-access-token:ghp_xyz\xff"}) {
    EXPECT_EQ(*base64_decode(base64_encode(s)), s);
    EXPECT_EQ(*base64_decode(base64_encode(s, true), true), s);
  }
  EXPECT_EQ(base64_encode("user:pass"), "dXNlcjpwYXNz");
  EXPECT_FALSE(base64_decode("dXNlcjpwYXNz=").has_value());
  EXPECT_FALSE(base64_decode("dXNl cjpw").has_value());
  EXPECT_FALSE(base64_decode("YR==").has_value());  // non-canonical padding bits
  EXPECT_FALSE(base64_decode("a-b_", false).has_value());
}

// Stable placeholders (issue 15): the same (key, credential, secret) gives the same placeholder
// in every session; another secret, credential or key gives another; the shape is kept.
std::string seeded(std::string_view real, std::string_view key, std::string_view label,
                   unsigned attempt = 0) {
  const PlaceholderSeed seed{.key = key, .label = label, .attempt = attempt};
  auto p = make_placeholder(real, {}, &seed);
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message());
  EXPECT_EQ(p->size(), real.size());
  EXPECT_NE(*p, real);
  return p ? *p : std::string();
}

TEST(Placeholder, StableUnderAKeyAndOnlyUnderIt) {
  const std::string key(32, 'k');
  const std::string other_key(32, 'K');
  const std::string real = "sk-ant-api03-" + std::string("aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5");
  const auto p = seeded(real, key, "anthropic");
  EXPECT_EQ(p.substr(0, 13), "sk-ant-api03-");
  EXPECT_EQ(seeded(real, key, "anthropic"), p) << "same key, credential and secret";
  std::string rotated = real;
  rotated.back() = rotated.back() == 'Z' ? 'Y' : 'Z';
  EXPECT_NE(seeded(rotated, key, "anthropic"), p) << "a different secret";
  EXPECT_NE(seeded(real, key, "other"), p) << "a different credential";
  EXPECT_NE(seeded(real, other_key, "anthropic"), p) << "a different user's key";
  EXPECT_NE(seeded(real, key, "anthropic", 1), p) << "the next attempt after a clash";
  EXPECT_NE(seeded(real, "", "anthropic"), seeded(real, "", "anthropic")) << "no key: random";
}

TEST(Placeholder, StableKeepsEveryShape) {
  const std::string key(32, 'x');
  const std::string gh = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
  EXPECT_EQ(seeded(gh, key, "g").substr(0, 4), "ghp_");
  EXPECT_TRUE(all_in(seeded(gh, key, "g").substr(4), kBase62));
  const std::string aws = "AKIAIOSFODNN7EXAMPLE";
  EXPECT_TRUE(all_in(seeded(aws, key, "a").substr(4), "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
  // The characters of a stable placeholder are spread over the alphabet like random ones: a
  // secret of one repeated character does not show through.
  std::set<char> seen;
  for (char ch : seeded("ghp_" + std::string(36, 'a'), key, "g").substr(4)) {
    seen.insert(ch);
  }
  EXPECT_GT(seen.size(), 15u);
}

TEST(Placeholder, GoogleApiKeyKeepsItsPrefix) {
  const std::string real = "AIzaSyA1b2C3d4E5f6G7h8I9j0K_L-m2N3o4P5q";
  ASSERT_EQ(real.size(), 39u);
  EXPECT_EQ(placeholder_shape(real), "google-api-key");
  for (const auto& p : {make(real), seeded(real, std::string(32, 'k'), "gemini")}) {
    EXPECT_EQ(p.substr(0, 4), "AIza");
    EXPECT_TRUE(
        all_in(p.substr(4), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"));
  }
}

}  // namespace
}  // namespace agentbox::cred
