// Workspace detection and the box's working directory.
#include "agentbox/sandbox/workspace.hpp"

#include <gtest/gtest.h>

#include <set>

namespace agentbox::sandbox {
namespace {

TEST(Workspace, NearestGitRepositoryUpwards) {
  std::set<std::string> repos = {"/home/a/src/proj", "/home/a/src/proj/vendor/lib"};
  auto has_git = [&](const std::string& d) { return repos.count(d) > 0; };
  EXPECT_EQ(detect_workspace("/home/a/src/proj/sub/dir", has_git), "/home/a/src/proj");
  EXPECT_EQ(detect_workspace("/home/a/src/proj", has_git), "/home/a/src/proj");
  EXPECT_EQ(detect_workspace("/home/a/src/proj/vendor/lib/x", has_git),
            "/home/a/src/proj/vendor/lib");
  EXPECT_EQ(detect_workspace("/home/a/src/other", has_git), "/home/a/src/other");
}

TEST(Workspace, GitAtTheRootIsFound) {
  auto has_git = [](const std::string& d) { return d == "/"; };
  EXPECT_EQ(detect_workspace("/srv/x", has_git), "/");
}

TEST(Workspace, BoxCwd) {
  EXPECT_EQ(box_cwd("/w/p/sub", "/w/p"), "/w/p/sub");
  EXPECT_EQ(box_cwd("/w/p", "/w/p"), "/w/p");
  EXPECT_EQ(box_cwd("/w/px", "/w/p"), "/w/p");  // a sibling with a common prefix is outside
  EXPECT_EQ(box_cwd("/elsewhere", "/w/p"), "/w/p");
}

TEST(Workspace, RefusesRootAndHome) {
  EXPECT_NE(workspace_problem("/", "/home/a"), "");
  EXPECT_NE(workspace_problem("/home/a", "/home/a"), "");
  EXPECT_NE(workspace_problem("/home", "/home/a"), "");
  EXPECT_EQ(workspace_problem("/home/a/src", "/home/a"), "");
  EXPECT_EQ(workspace_problem("/home/ab", "/home/a"), "");
}

}  // namespace
}  // namespace agentbox::sandbox
