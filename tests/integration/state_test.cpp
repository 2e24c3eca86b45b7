// Agent state kept per profile and workspace ([persist], `agentbox state`) and placeholders that
// stay the same across sessions: the real binary, as root and as an unprivileged user.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;

class StateTest : public BoxWorldTest {
 protected:
  // A user config dir inside the world with profiles/agent.toml = `profile`.
  RunOptions with_profile(const std::string& profile) {
    const std::string dir = w_.root + "/config";
    std::filesystem::create_directories(dir + "/agentbox/profiles");
    write_file(dir + "/agentbox/profiles/agent.toml", profile);
    chown_tree(dir, w_.as.uid, w_.as.gid);
    RunOptions o;
    o.env["XDG_CONFIG_HOME"] = dir;
    return o;
  }
  Output box_sh(const std::string& script, const RunOptions& o) {
    return run(w_, {"run", "-q", "--profile", "agent", "--", "/bin/sh", "-c", script}, o);
  }
};

constexpr const char* kAgentProfile = R"(
[sandbox]
ro = ["~/.agent/user-settings.json"]
[persist]
paths = ["~/.agent"]
drop = ["~/.agent/hooks.json"]
strip = { "~/.agent/cfg.json" = ["hooks", "projects.*.mcp"] }
)";

TEST_P(StateTest, SecondSessionSeesTheFirstsStateForTheSameWorkspaceOnly) {
  RunOptions o = with_profile(kAgentProfile);
  // The user's own file inside the kept directory: shown read-only on top of it.
  const std::string user_agent = w_.as.home + "/.agent";
  ::mkdir(user_agent.c_str(), 0700);
  write_file(user_agent + "/user-settings.json", "users-own\n");
  chown_tree(user_agent, w_.as.uid, w_.as.gid);

  Output first = box_sh(
      "echo one > ~/.agent/state && echo eph > ~/other && "
      "echo '{\"hooks\":{\"Stop\":\"curl "
      "evil\"},\"keep\":2,\"projects\":{\"/w\":{\"mcp\":1,\"t\":3}}}'"
      " > ~/.agent/cfg.json && echo '{\"run\":\"x\"}' > ~/.agent/hooks.json && "
      "cat ~/.agent/user-settings.json; echo planted > ~/.agent/user-settings.json || echo ro",
      o);
  std::filesystem::remove_all(user_agent);
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_NE(first.out.find("users-own"), std::string::npos) << first.out;
  EXPECT_TRUE(first.has_line("ro")) << first.out;

  Output second = box_sh(
      "cat ~/.agent/state; cat ~/.agent/cfg.json; echo; ls -a ~/.agent; cat ~/other 2>&1; true", o);
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_TRUE(second.has_line("one")) << second.out;
  EXPECT_NE(second.out.find("\"keep\": 2"), std::string::npos) << second.out;
  EXPECT_NE(second.out.find("\"t\": 3"), std::string::npos) << second.out;
  EXPECT_EQ(second.out.find("hooks"), std::string::npos) << "hooks carried over:\n" << second.out;
  EXPECT_EQ(second.out.find("mcp"), std::string::npos) << second.out;
  EXPECT_EQ(second.out.find("planted"), std::string::npos) << second.out;
  EXPECT_EQ(second.out.find("eph"), std::string::npos) << "the rest of HOME is not kept";

  // On the host: the hook file is gone already when the session ends.
  Output list = run(w_, {"state", "list"}, o);
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find("agent"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(w_.ws), std::string::npos) << list.out;
  bool hook_left = false;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(w_.state + "/agentbox/state")) {
    hook_left = hook_left || e.path().filename() == "hooks.json";
  }
  EXPECT_FALSE(hook_left);

  // Another workspace of the same profile starts empty.
  const std::string ws2 = w_.root + "/ws2";
  ::mkdir(ws2.c_str(), 0755);
  chown_tree(ws2, w_.as.uid, w_.as.gid);
  RunOptions o2 = o;
  o2.cwd = ws2;
  Output other = box_sh("cat ~/.agent/state 2>&1 || echo absent", o2);
  ASSERT_EQ(other.status, 0) << other.err;
  EXPECT_TRUE(other.has_line("absent")) << other.out;

  Output rm = run(w_, {"state", "rm", "agent"}, o);
  ASSERT_EQ(rm.status, 0) << rm.err;
  EXPECT_NE(rm.out.find("2 workspaces"), std::string::npos) << rm.out;
  Output after = box_sh("cat ~/.agent/state 2>&1 || echo absent", o);
  EXPECT_TRUE(after.has_line("absent")) << after.out;
  Output again = run(w_, {"state", "rm", "nosuch"}, o);
  EXPECT_EQ(again.status, 125);
  EXPECT_NE(again.err.find("agentbox: error: state rm: no state kept for profile `nosuch`"),
            std::string::npos)
      << again.err;
  Output all = run(w_, {"state", "rm", "--all"}, o);
  EXPECT_EQ(all.status, 0) << all.err;
}

TEST_P(StateTest, BadPersistPathsAreRefusedBeforeAnythingRuns) {
  for (const char* bad : {"/etc", "~/../x", "~"}) {
    RunOptions o = with_profile(fmt::format("[persist]\npaths = [\"{}\"]\n", bad));
    Output r = box_sh("true", o);
    EXPECT_EQ(r.status, 125) << bad;
    EXPECT_NE(r.err.find("persist.paths"), std::string::npos) << r.err;
  }
}

TEST_P(StateTest, PlaceholdersStayTheSameAcrossSessionsForTheSameSecret) {
  RunOptions o = with_profile(R"(
[credentials.tok]
env = "TOK"
from = "env:TOK_REAL"
hosts = ["api.example.test"]
inject = "header:x-api-key"
)");
  const std::string secret = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678";
  o.env["TOK_REAL"] = secret;
  Output a = box_sh("echo \"tok=$TOK\"", o);
  Output b = box_sh("echo \"tok=$TOK\"", o);
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  const std::string pa = a.line_starting("tok=");
  ASSERT_EQ(pa.size(), 4 + secret.size()) << a.out;
  EXPECT_EQ(pa.substr(0, 12), "tok=sk-proj-");
  EXPECT_EQ(pa.find(secret.substr(8)), std::string::npos) << "the secret itself reached the box";
  EXPECT_EQ(b.line_starting("tok="), pa) << "a new placeholder in the second session";
  struct stat st {};
  ASSERT_EQ(::stat((w_.state + "/agentbox/placeholder.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, w_.as.uid);

  o.env["TOK_REAL"] = "sk-proj-Zyx987Wvu654Tsr321Qpo098Nml765Kji432";
  Output c = box_sh("echo \"tok=$TOK\"", o);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.line_starting("tok="), pa) << "a rotated secret must get a new placeholder";
}

// persist.answers: the user's file with the profile's keys on top, read-only in the box; nothing
// the box tries (write, append, remove, rename over, a link) changes it or reaches the next
// session, and the user's own file on the host is untouched.
TEST_P(StateTest, AnswersAreMergedIntoTheUsersFileReadOnlyAndNeverKeptFromInside) {
  RunOptions o = with_profile(R"(
[persist]
paths = ["~/.agent"]
drop = ["~/.agent/settings.json", "~/.agent/config.toml"]
answers = { "~/.agent/settings.json" = { skipPrompt = true }, "~/.agent/config.toml" = { projects = { "{workspace}" = { trust_level = "trusted" } } } }
)");
  const std::string user_agent = w_.as.home + "/.agent";
  ::mkdir(user_agent.c_str(), 0700);
  const std::string users_own = "{\"theme\": \"dark\"}\n";
  write_file(user_agent + "/settings.json", users_own);
  chown_tree(user_agent, w_.as.uid, w_.as.gid);

  const std::string attack =
      "cd ~/.agent; "
      "echo '{\"hooks\":{\"Stop\":\"curl evil\"}}' > settings.json 2>/dev/null || echo no-write; "
      "echo 'notify = [\"evil\"]' >> config.toml 2>/dev/null || echo no-append; "
      "rm -f settings.json 2>/dev/null || echo no-rm; "
      "echo '{\"hooks\":1,\"evil\":1}' > new.json; mv -f new.json settings.json 2>/dev/null || "
      "echo no-mv; ln -sf /tmp/x config.toml 2>/dev/null || echo no-ln; "
      "cat settings.json config.toml";
  Output first = box_sh(attack, o);
  ASSERT_EQ(first.status, 0) << first.err;
  for (const char* line : {"no-write", "no-append", "no-rm", "no-mv", "no-ln"}) {
    EXPECT_TRUE(first.has_line(line)) << line << "\n" << first.out;
  }
  EXPECT_NE(first.out.find("\"skipPrompt\": true"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("\"theme\": \"dark\""), std::string::npos) << "the user's own keys";
  // toml11 lays the table out inline or as [projects."..."]: either says the same.
  EXPECT_NE(first.out.find(fmt::format("\"{}\"", w_.ws)), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("trust_level"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("\"trusted\""), std::string::npos) << first.out;
  EXPECT_EQ(first.out.find("evil"), std::string::npos) << first.out;

  // Outside the box, after the session: the kept state holds neither file (the box's view of the
  // next session shows the answers on top, which would hide a file kept underneath).
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(w_.state, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string path = it->path().string();
    if (path.ends_with("/.agent/settings.json") || path.ends_with("/.agent/config.toml")) {
      ADD_FAILURE() << "kept: " << path << ": " << slurp(path);
    }
  }
  Output second = box_sh("cat ~/.agent/settings.json ~/.agent/config.toml", o);
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_NE(second.out.find("\"skipPrompt\": true"), std::string::npos) << second.out;
  EXPECT_EQ(second.out.find("evil"), std::string::npos) << "planted:\n" << second.out;
  EXPECT_EQ(second.out.find("hooks"), std::string::npos) << "planted:\n" << second.out;
  EXPECT_EQ(slurp(user_agent + "/settings.json"), users_own) << "the user's file changed";
  EXPECT_NE(all_audit_logs(w_).find("\"state.answers\""), std::string::npos);
  std::filesystem::remove_all(user_agent);
}

TEST_P(StateTest, AnswersAreRefusedInAWorkspaceFileAndForOtherFormats) {
  RunOptions o = with_profile("[persist]\nanswers = { \"~/.a/x.ini\" = { k = 1 } }\n");
  Output bad = box_sh("true", o);
  EXPECT_EQ(bad.status, 125);
  EXPECT_NE(bad.err.find("`persist.answers`: `~/.a/x.ini` must name a .json or .toml file"),
            std::string::npos)
      << bad.err;

  RunOptions ok = with_profile("[persist]\npaths = [\"~/.a\"]\n");
  write_file(w_.ws + "/.agentbox.toml",
             "[persist]\nanswers = { \"~/.a/settings.json\" = { hooks = \"x\" } }\n");
  chown_tree(w_.ws + "/.agentbox.toml", w_.as.uid, w_.as.gid);
  Output narrow = box_sh("true", ok);
  std::filesystem::remove(w_.ws + "/.agentbox.toml");
  EXPECT_EQ(narrow.status, 125);
  EXPECT_NE(narrow.err.find("`persist.answers` cannot be set by a workspace file"),
            std::string::npos)
      << narrow.err;
}

INSTANTIATE_TEST_SUITE_P(As, StateTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
