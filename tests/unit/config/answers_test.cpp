// persist.answers: the profile's keys merged into the user's settings file (JSON and TOML).
#include "agentbox/config/answers.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <toml.hpp>

namespace agentbox::config {
namespace {

TEST(Answers, FormatComesFromTheExtension) {
  EXPECT_EQ(answer_format("~/.claude/settings.json"), AnswerFormat::kJson);
  EXPECT_EQ(answer_format("~/.codex/config.toml"), AnswerFormat::kToml);
  EXPECT_FALSE(answer_format("~/.a/x.ini"));
  EXPECT_FALSE(answer_format(".json"));
}

TEST(Answers, JsonKeysAreMergedOnTopOfTheUsersOwn) {
  auto out = merge_answers(AnswerFormat::kJson,
                           R"({"theme":"dark","permissions":{"allow":["Bash"],"deny":[]}})",
                           R"({"skip":true,"permissions":{"deny":["Read"]}})", "/w");
  ASSERT_TRUE(out) << out.error().message();
  auto j = nlohmann::json::parse(*out);
  EXPECT_EQ(j["theme"], "dark");
  EXPECT_EQ(j["skip"], true);
  EXPECT_EQ(j["permissions"]["allow"], nlohmann::json::array({"Bash"}));
  EXPECT_EQ(j["permissions"]["deny"], nlohmann::json::array({"Read"}));
}

TEST(Answers, NoUserFileGivesTheAnswersAlone) {
  auto out = merge_answers(AnswerFormat::kJson, "", R"({"skip":true})", "/w");
  ASSERT_TRUE(out);
  EXPECT_EQ(nlohmann::json::parse(*out), nlohmann::json::parse(R"({"skip":true})"));
}

TEST(Answers, TomlGetsTheWorkspaceInKeysAndValues) {
  auto out =
      merge_answers(AnswerFormat::kToml, "model = \"o3\"\n[projects.\"/other\"]\nx = 1\n",
                    R"({"projects":{"{workspace}":{"trust_level":"trusted","p":"{workspace}/a"}}})",
                    "/home/u/proj");
  ASSERT_TRUE(out) << out.error().message();
  // Judged by a TOML parser: the layout (inline or [section] tables) is toml11's choice.
  std::istringstream in(*out);
  const toml::value doc = toml::parse(in, "merged");
  EXPECT_EQ(toml::find<std::string>(doc, "model"), "o3") << *out;
  EXPECT_EQ(toml::find<std::string>(doc, "projects", "/home/u/proj", "trust_level"), "trusted")
      << *out;
  EXPECT_EQ(toml::find<std::string>(doc, "projects", "/home/u/proj", "p"), "/home/u/proj/a")
      << *out;
  EXPECT_EQ(toml::find<int64_t>(doc, "projects", "/other", "x"), 1) << *out;
  EXPECT_EQ(out->find("{workspace}"), std::string::npos) << *out;
}

TEST(Answers, AnUnparsableUserFileIsAnErrorNotASilentReplace) {
  EXPECT_FALSE(merge_answers(AnswerFormat::kJson, "{nope", R"({"a":1})", "/w"));
  EXPECT_FALSE(merge_answers(AnswerFormat::kJson, "[1,2]", R"({"a":1})", "/w"));
  auto bad = merge_answers(AnswerFormat::kToml, "a = = 1\n", R"({"a":1})", "/w");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("not valid TOML"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::config
