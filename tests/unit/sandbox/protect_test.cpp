// Placeholders for protected workspace paths (a real temporary directory, no privileges).
#include "agentbox/sandbox/protect.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

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
