// Agent state kept per profile and workspace: layout, binds, sanitizing (drop, strip) without
// following links, the placeholder key, list and rm.
#include "agentbox/app/agent_state.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace agentbox::app {
namespace {

namespace fs = std::filesystem;

struct Tmp {
  std::string path;
  Tmp() {
    char tmpl[] = "/tmp/agentbox-state-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~Tmp() { fs::remove_all(path); }
  Tmp(const Tmp&) = delete;
  Tmp& operator=(const Tmp&) = delete;
};

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

PersistSpec claude_like(const std::string& workspace) {
  return {.scope = "claude",
          .workspace = workspace,
          .paths = {"~/.claude"},
          .drop = {"~/.claude/settings.json", "~/.claude/plugins"},
          .strip = {{"~/.claude/.claude.json", {"mcpServers", "projects.*.mcpServers"}}}};
}

TEST(AgentState, HomeRelativePathsOnly) {
  EXPECT_EQ(home_relative("~/.claude"), ".claude");
  EXPECT_EQ(home_relative("~/.config/gcloud/"), ".config/gcloud");
  for (const char* bad : {"~", "~/", "/etc", "~/../x", "~/a/./b", "~/a//b", "~user/x", ".claude"}) {
    EXPECT_EQ(home_relative(bad), "") << bad;
  }
}

TEST(AgentState, OneDirectoryPerProfileAndWorkspace) {
  Tmp t;
  const std::string state = t.path + "/agentbox";
  auto a = prepare_persist(state, claude_like("/work/a"), "/home/u");
  ASSERT_TRUE(a) << a.error().message();
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].target, "/home/u/.claude");
  EXPECT_TRUE((*a)[0].dir);
  EXPECT_EQ((*a)[0].source, scope_dir(state, claude_like("/work/a")) + "/home/.claude");
  EXPECT_TRUE(fs::is_directory((*a)[0].source));
  EXPECT_EQ(fs::status((*a)[0].source).permissions() & fs::perms::all, fs::perms::owner_all);
  auto b = prepare_persist(state, claude_like("/work/b"), "/home/u");
  ASSERT_TRUE(b);
  EXPECT_NE((*a)[0].source, (*b)[0].source);
  PersistSpec other = claude_like("/work/a");
  other.scope = "codex";
  EXPECT_NE(scope_dir(state, other), scope_dir(state, claude_like("/work/a")));
  EXPECT_EQ(read(scope_dir(state, claude_like("/work/a")) + "/workspace"), "/work/a");
  PersistSpec bad = claude_like("/w");
  bad.scope = "../x";
  EXPECT_FALSE(prepare_persist(state, bad, "/home/u"));
}

TEST(AgentState, DropsAndStripsWhatStartsPrograms) {
  Tmp t;
  const std::string state = t.path + "/agentbox";
  const PersistSpec spec = claude_like("/work/a");
  ASSERT_TRUE(prepare_persist(state, spec, "/home/u"));
  const std::string home = scope_dir(state, spec) + "/home";
  write(home + "/.claude/settings.json", R"({"hooks":{"Stop":[]}})");
  write(home + "/.claude/plugins/p/hooks.json", "{}");
  write(home + "/.claude/projects/x.jsonl", "history");
  write(home + "/.claude/.claude.json",
        R"({"hasCompletedOnboarding":true,"mcpServers":{"m":{"command":"sh"}},)"
        R"("projects":{"/work/a":{"mcpServers":{"n":{}},"allowedTools":[]}}})");
  auto removed = sanitize_persist(state, spec);
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_FALSE(fs::exists(home + "/.claude/settings.json"));
  EXPECT_FALSE(fs::exists(home + "/.claude/plugins"));
  EXPECT_EQ(read(home + "/.claude/projects/x.jsonl"), "history");
  const std::string cfg = read(home + "/.claude/.claude.json");
  EXPECT_NE(cfg.find("hasCompletedOnboarding"), std::string::npos);
  EXPECT_NE(cfg.find("allowedTools"), std::string::npos);
  EXPECT_EQ(cfg.find("mcpServers"), std::string::npos) << cfg;
  EXPECT_EQ(removed->size(), 3u);
  // Unparsable: it cannot be checked, so it goes.
  write(home + "/.claude/.claude.json", R"({"mcpServers":)");
  ASSERT_TRUE(sanitize_persist(state, spec));
  EXPECT_FALSE(fs::exists(home + "/.claude/.claude.json"));
}

TEST(AgentState, LinksPlantedInTheStateAreRemovedNeverFollowed) {
  Tmp t;
  const std::string state = t.path + "/agentbox";
  const std::string outside = t.path + "/outside";
  write(outside + "/settings.json", "keep");
  write(outside + "/plugins/x", "keep");
  write(outside + "/cfg.json", R"({"mcpServers":{}})");
  const PersistSpec spec = claude_like("/work/a");
  ASSERT_TRUE(prepare_persist(state, spec, "/home/u"));
  const std::string home = scope_dir(state, spec) + "/home";
  fs::create_symlink(outside + "/settings.json", home + "/.claude/settings.json");
  fs::create_symlink(outside + "/plugins", home + "/.claude/plugins");
  fs::create_symlink(outside + "/cfg.json", home + "/.claude/.claude.json");
  ASSERT_TRUE(sanitize_persist(state, spec));
  for (const char* p : {"/.claude/settings.json", "/.claude/plugins", "/.claude/.claude.json"}) {
    EXPECT_FALSE(fs::exists(fs::symlink_status(home + p))) << p;
  }
  EXPECT_EQ(read(outside + "/settings.json"), "keep");
  EXPECT_EQ(read(outside + "/plugins/x"), "keep");
  EXPECT_EQ(read(outside + "/cfg.json"), R"({"mcpServers":{}})");
  // A link as a directory on the way to a dropped path: the link goes, its target stays.
  PersistSpec deep = spec;
  deep.drop = {"~/.claude/sub/settings.json"};
  fs::create_symlink(outside, home + "/.claude/sub");
  ASSERT_TRUE(sanitize_persist(state, deep));
  EXPECT_FALSE(fs::exists(fs::symlink_status(home + "/.claude/sub")));
  EXPECT_EQ(read(outside + "/settings.json"), "keep");
}

TEST(AgentState, PlaceholderKeyIsPrivateAndStable) {
  Tmp t;
  auto k1 = placeholder_key(t.path);
  ASSERT_TRUE(k1) << k1.error().message();
  EXPECT_EQ(k1->size(), 32u);
  struct stat st {};
  ASSERT_EQ(::stat((t.path + "/placeholder.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto k2 = placeholder_key(t.path);
  ASSERT_TRUE(k2);
  EXPECT_EQ(*k1, *k2);
  ::chmod((t.path + "/placeholder.key").c_str(), 0640);
  EXPECT_FALSE(placeholder_key(t.path)) << "a key others can read is refused";
  Tmp other;
  auto k3 = placeholder_key(other.path);
  ASSERT_TRUE(k3);
  EXPECT_NE(*k1, *k3);
}

TEST(AgentState, ListAndRemove) {
  Tmp t;
  const std::string state = t.path + "/agentbox";
  PersistSpec codex = claude_like("/work/a");
  codex.scope = "codex";
  ASSERT_TRUE(prepare_persist(state, claude_like("/work/a"), "/home/u"));
  ASSERT_TRUE(prepare_persist(state, claude_like("/work/b"), "/home/u"));
  ASSERT_TRUE(prepare_persist(state, codex, "/home/u"));
  auto l = list_state(state);
  ASSERT_TRUE(l);
  ASSERT_EQ(l->size(), 3u);
  EXPECT_EQ((*l)[0].scope, "claude");
  EXPECT_EQ((*l)[0].workspace, "/work/a");
  EXPECT_EQ((*l)[2].scope, "codex");
  auto n = remove_state(state, "claude");
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(list_state(state)->size(), 1u);
  EXPECT_EQ(*remove_state(state, "claude"), 0u);
  EXPECT_FALSE(remove_state(state, "../x"));
  EXPECT_EQ(*remove_state(state, ""), 1u);
  EXPECT_TRUE(list_state(state)->empty());
}

}  // namespace
}  // namespace agentbox::app
