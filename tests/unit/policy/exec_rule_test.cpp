// Exec rules: the grammar (program, argument patterns, action) and the first-match verdict.
#include "agentbox/policy/exec_rule.hpp"

#include <gtest/gtest.h>

namespace agentbox::policy {
namespace {

ExecRule rule(std::string_view program, std::vector<std::string> args,
              std::string_view action = "deny") {
  auto r = parse_exec_rule(program, args, action);
  EXPECT_TRUE(r) << r.error().message();
  return r ? *r : ExecRule{};
}

ExecCall call(std::string path, std::vector<std::string> argv, std::string cwd = "/work") {
  return ExecCall{.path = std::move(path),
                  .given = "",
                  .argv = std::move(argv),
                  .truncated = false,
                  .cwd = std::move(cwd)};
}

TEST(ExecRule, ForcePushEverySpelling) {
  ExecPolicy pol({rule("git", {"push", "--force*|-f|+*"})}, "/work");
  for (auto argv : std::vector<std::vector<std::string>>{
           {"git", "push", "--force"},
           {"git", "push", "origin", "main", "--force"},
           {"git", "push", "-f"},
           {"git", "push", "-uf", "origin"},
           {"git", "push", "-fu"},
           {"git", "push", "--force-with-lease"},
           {"git", "-C", "/work", "push", "origin", "+main"},
       }) {
    EXPECT_EQ(pol.decide(call("/usr/bin/git", argv)).action, ExecAction::deny) << argv.size();
  }
  for (auto argv : std::vector<std::vector<std::string>>{
           {"git", "push"},
           {"git", "push", "origin", "main"},
           {"git", "--force", "push"},  // order matters: --force before push is not this rule
           {"git", "push", "--follow-tags"},
           {"git", "fetch", "-f"},
       }) {
    EXPECT_EQ(pol.decide(call("/usr/bin/git", argv)).action, ExecAction::allow) << argv.size();
  }
}

TEST(ExecRule, ShortOptionIsNotALongOne) {
  ExecPolicy pol({rule("rm", {"-r"})}, "/work");
  EXPECT_EQ(pol.decide(call("/bin/rm", {"rm", "-rf", "x"})).action, ExecAction::deny);
  EXPECT_EQ(pol.decide(call("/bin/rm", {"rm", "-fr", "x"})).action, ExecAction::deny);
  EXPECT_EQ(pol.decide(call("/bin/rm", {"rm", "--recursive", "x"})).action, ExecAction::allow);
  EXPECT_EQ(pol.decide(call("/bin/rm", {"rm", "-f", "x"})).action, ExecAction::allow);
}

TEST(ExecRule, OutsideWorkspace) {
  ExecPolicy pol({rule("rm", {"-r|-R|--recursive", "@outside-workspace"})}, "/work/proj");
  auto d = [&](std::vector<std::string> argv, std::string cwd = "/work/proj") {
    return pol.decide(call("/usr/bin/rm", std::move(argv), std::move(cwd))).action;
  };
  EXPECT_EQ(d({"rm", "-rf", "build"}), ExecAction::allow);
  EXPECT_EQ(d({"rm", "-rf", "/work/proj/build"}), ExecAction::allow);
  EXPECT_EQ(d({"rm", "-rf", "/work/proj"}), ExecAction::allow);
  EXPECT_EQ(d({"rm", "-rf", ".."}), ExecAction::deny);
  EXPECT_EQ(d({"rm", "-rf", "build/../../x"}), ExecAction::deny);
  EXPECT_EQ(d({"rm", "-rf", "/work/projector"}), ExecAction::deny);
  EXPECT_EQ(d({"rm", "-rf", "/home/u"}), ExecAction::deny);
  EXPECT_EQ(d({"rm", "-rf", "x"}, "/tmp"), ExecAction::deny);
  EXPECT_EQ(d({"rm", "--recursive", "--", "/"}), ExecAction::deny);
}

TEST(ExecRule, ProgramByNameOrPathGlob) {
  ExecRule by_name = rule("git", {});
  ExecRule by_path = rule("/usr/*/git", {});
  ExecRule deep = rule("/usr/**/git*", {});
  EXPECT_TRUE(program_matches(by_name, call("/usr/bin/git", {"x"})));
  EXPECT_FALSE(program_matches(by_name, call("/usr/bin/gitk", {"x"})));
  EXPECT_TRUE(program_matches(by_path, call("/usr/bin/git", {"x"})));
  EXPECT_FALSE(program_matches(by_path, call("/usr/local/bin/git", {"x"})));
  EXPECT_TRUE(program_matches(deep, call("/usr/local/bin/git-upload-pack", {"x"})));
  // Unresolved (a memfd): the given path decides.
  ExecCall given = call("", {"x"});
  given.given = "/proc/self/fd/3";
  EXPECT_FALSE(program_matches(by_name, given));
}

TEST(ExecRule, FirstMatchWins) {
  ExecPolicy pol({rule("npm", {"publish", "--dry-run"}, "allow"), rule("npm", {"publish"}, "ask")},
                 "/w");
  EXPECT_EQ(pol.decide(call("/usr/bin/npm", {"npm", "publish", "--dry-run"})).action,
            ExecAction::allow);
  ExecVerdict v = pol.decide(call("/usr/bin/npm", {"npm", "publish"}));
  EXPECT_EQ(v.action, ExecAction::ask);
  EXPECT_EQ(v.rule, 1);
  EXPECT_EQ(v.reason, "rule `npm publish`");
}

TEST(ExecRule, TruncatedArgvOfAGuardedProgramIsDenied) {
  ExecPolicy pol({rule("git", {"push", "--force"})}, "/w");
  ExecCall c = call("/usr/bin/git", {"git", "push"});
  c.truncated = true;
  EXPECT_EQ(pol.decide(c).action, ExecAction::deny);
  c.path = "/usr/bin/ls";
  EXPECT_EQ(pol.decide(c).action, ExecAction::allow);
}

TEST(ExecRule, Glob) {
  EXPECT_TRUE(exec_glob("--force*", "--force-with-lease", false));
  EXPECT_TRUE(exec_glob("a\\*b", "a*b", false));
  EXPECT_FALSE(exec_glob("a\\*b", "axb", false));
  EXPECT_TRUE(exec_glob("a?c", "abc", false));
  EXPECT_TRUE(exec_glob("*", "", false));
  EXPECT_FALSE(exec_glob("a", "", false));
  EXPECT_TRUE(exec_glob("/a/*/c", "/a/b/c", true));
  EXPECT_FALSE(exec_glob("/a/*/c", "/a/b/x/c", true));
  EXPECT_TRUE(exec_glob("/a/**/c", "/a/b/x/c", true));
  EXPECT_FALSE(exec_glob("/a/?", "/a//", true));
  // Linear in the text: a pathological pattern against a long argument ends at once.
  std::string longarg(100000, 'a');
  EXPECT_FALSE(exec_glob("*a*a*a*a*a*a*b", longarg, false));
}

TEST(ExecRule, BadRulesSayWhat) {
  auto e = [](std::string_view prog, std::vector<std::string> args, std::string_view act) {
    auto r = parse_exec_rule(prog, args, act);
    EXPECT_FALSE(r);
    return r ? std::string() : r.error().message();
  };
  EXPECT_NE(e("", {}, "deny").find("`program` is empty"), std::string::npos);
  EXPECT_NE(e("bin/git", {}, "deny").find("relative path"), std::string::npos);
  EXPECT_NE(e("git", {}, "block").find("`block` is not an action"), std::string::npos);
  EXPECT_NE(e("git", {"push", "a||b"}, "deny").find("pattern 2"), std::string::npos);
  EXPECT_NE(e("git", {"@inside"}, "deny").find("unknown `@inside`"), std::string::npos);
  EXPECT_NE(e("git", {"x\\"}, "deny").find("lone backslash"), std::string::npos);
}

TEST(ExecRule, Helpers) {
  EXPECT_EQ(normalize_path("/a/b", "../c/./d"), "/a/c/d");
  EXPECT_EQ(normalize_path("/a", "/../.."), "/");
  EXPECT_EQ(shell_quote({"git", "commit", "-m", "it's"}), "git commit -m 'it'\\''s'");
  EXPECT_EQ(shell_quote({"echo", "a\x1b[2Jb"}), "echo $'a\\x1b[2Jb'");
  EXPECT_EQ(shell_quote({""}), "''");
}

}  // namespace
}  // namespace agentbox::policy
