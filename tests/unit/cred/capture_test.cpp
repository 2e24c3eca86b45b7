// Capture rules: field readers, the token file edit, atomic write-back, minting actions, and
// CredentialSet::capture (new secrets become placeholders, swapped back only in scope).
#include "agentbox/cred/capture.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "agentbox/cred/credentials.hpp"

namespace agentbox::cred {
namespace {

const std::string kOld = "sk-ant-ort01-OldRefresh0123456789abcdef";
const std::string kNew = "sk-ant-oat01-NewAccess/0123456789abcdef";

TEST(Capture, JsonAndXmlFieldsAreRead) {
  auto j = json_field(R"({"a": {"token": "v\/alue-0123"}, "n": 1})", "a.token");
  ASSERT_TRUE(j);
  EXPECT_EQ(j->value_or(""), "v/alue-0123");
  EXPECT_FALSE(json_field("<html>", "a"));
  EXPECT_FALSE(json_field(R"({"n": 1})", "n")->has_value());
  auto x =
      xml_element("<R><SecretAccessKey> abc/def+0123 </SecretAccessKey></R>", "SecretAccessKey");
  ASSERT_TRUE(x);
  EXPECT_EQ(x->value_or(""), "abc/def+0123");
  EXPECT_FALSE(xml_element("<R><Token>a&amp;b</Token></R>", "Token")) << "an entity is refused";
  EXPECT_FALSE(xml_element("<R><Token>a<b/>c</Token></R>", "Token")) << "markup is refused";
  EXPECT_FALSE(xml_element("<R><Token>abc", "Token")) << "unclosed";
  EXPECT_FALSE(xml_element("<R/>", "Token")->has_value());
}

TEST(Capture, TokenFileEditKeepsTheFormatting) {
  const std::string text = "{\n  \"o\": {\n    \"r\": \"" + kOld + "\",\n    \"x\": 1\n  }\n}\n";
  auto edited = set_json_field_text(text, "o.r", kNew);
  ASSERT_TRUE(edited);
  EXPECT_EQ(json_field(*edited, "o.r")->value_or(""), kNew);
  EXPECT_NE(edited->find("\",\n    \"x\": 1\n  }\n}\n"), std::string::npos) << *edited;
  // The old value also elsewhere: only the field may change, so the document is rewritten.
  auto twice =
      set_json_field_text(R"({"r": ")" + kOld + R"(", "copy": ")" + kOld + R"("})", "r", kNew);
  ASSERT_TRUE(twice);
  EXPECT_EQ(json_field(*twice, "r")->value_or(""), kNew);
  EXPECT_EQ(json_field(*twice, "copy")->value_or(""), kOld);
  EXPECT_FALSE(set_json_field_text(R"({"r": 1})", "r", kNew));
  EXPECT_FALSE(set_json_field_text("not json", "r", kNew));
}

TEST(Capture, FileIsReplacedAtomicallyWithItsMode) {
  char dir[] = "/tmp/agentbox-capture-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/f.json";
  std::ofstream(path) << "old";
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  ASSERT_TRUE(replace_file_atomically(path, "new text"));
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mode & 07777, 0640u);
  std::stringstream got;
  got << std::ifstream(path).rdbuf();
  EXPECT_EQ(got.str(), "new text");
  ASSERT_TRUE(rewrite_in_place(path, "in place"));
  struct stat same {};
  ASSERT_EQ(::stat(path.c_str(), &same), 0);
  EXPECT_EQ(same.st_ino, after.st_ino);
  EXPECT_FALSE(replace_file_atomically(std::string(dir) + "/missing", "x"));
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST(Capture, MintingActionsFromQueryOrFormBody) {
  const std::string form = "application/x-www-form-urlencoded; charset=utf-8";
  EXPECT_EQ(minting_action("/?Action=CreateAccessKey&UserName=u", "", ""), "CreateAccessKey");
  EXPECT_EQ(minting_action("/", form, "Version=2010-05-08&Action=CreateLoginProfile"),
            "CreateLoginProfile");
  EXPECT_EQ(minting_action("/", form, "Action=Create%41ccessKey"), "CreateAccessKey");
  EXPECT_EQ(minting_action("/", form, "Action=AssumeRole"), "AssumeRole");
  EXPECT_FALSE(minting_action("/", form, "Action=ListUsers"));
  EXPECT_FALSE(minting_action("/", "application/json", "Action=CreateAccessKey"));
}

TEST(Capture, NewSecretsBecomePlaceholdersScopedLikeTheirOwner) {
  auto set = CredentialSet::load(
      {{.name = "oauth",
        .env = "OAUTH",
        .from = policy::SourceSpec::env("OAUTH"),
        .hosts = {"api.example", "auth.example"},
        .inject = agentbox::policy::InjectSpec::header("Authorization"),
        .capture = {{.host = "auth.example",
                     .method = "POST",
                     .path = "/token",
                     .json = "access_token"}}}},
      SecretSource([](const std::string&) { return std::optional<std::string>(kOld); }), nullptr);
  ASSERT_TRUE(set) << set.error().message();
  EXPECT_TRUE(set->captures("auth.example", "POST", "/token?x=1"));
  EXPECT_FALSE(set->captures("auth.example", "GET", "/token"));
  EXPECT_FALSE(set->captures("api.example", "POST", "/token"));
  const std::string body = R"({"access_token": ")" + kNew + R"(", "expires_in": 3600})";
  ASSERT_TRUE(set->capture("auth.example", "POST", "/token", 200, body));
  auto s = set->scrubber();
  std::string out = s.feed(body);
  out += s.finish();
  EXPECT_EQ(out.size(), body.size());
  EXPECT_EQ(out.find(kNew), std::string::npos) << out;
  const std::string ph = *json_field(out, "access_token").value();
  EXPECT_EQ(ph.substr(0, 13), "sk-ant-oat01-");
  http::Request in_scope;
  in_scope.method = "GET";
  in_scope.target = "/v1";
  in_scope.headers = {{"Host", "api.example"}, {"Authorization", "Bearer " + ph}};
  auto v = set->inspect(in_scope, "api.example");
  EXPECT_FALSE(v.blocked) << v.reason;
  EXPECT_EQ(in_scope.header("authorization").value_or(""), "Bearer " + kNew);
  http::Request off = in_scope;
  off.headers = {{"Host", "evil.example"}, {"Authorization", "Bearer " + ph}};
  EXPECT_TRUE(set->inspect(off, "evil.example").blocked);
  // A success the rule cannot read never reaches the box; an error answer may be anything.
  EXPECT_FALSE(set->capture("auth.example", "POST", "/token", 200, "<html>ok</html>"));
  EXPECT_TRUE(set->capture("auth.example", "POST", "/token", 502, "<html>bad gateway</html>"));
}

}  // namespace
}  // namespace agentbox::cred
