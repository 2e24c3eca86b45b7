// Pure helpers of `agentbox run`.
#include "agentbox/app/run.hpp"

#include <gtest/gtest.h>

namespace agentbox::app {
namespace {

TEST(Run, ExpandHome) {
  EXPECT_EQ(expand_home("~", "/home/a"), "/home/a");
  EXPECT_EQ(expand_home("~/.gitconfig", "/home/a"), "/home/a/.gitconfig");
  EXPECT_EQ(expand_home("~bob/x", "/home/a"), "~bob/x");
  EXPECT_EQ(expand_home("/etc/x", "/home/a"), "/etc/x");
}

TEST(Run, SessionsDirFollowsXdg) {
  EXPECT_EQ(sessions_dir({}, "/home/a"), "/home/a/.local/state/agentbox/sessions");
  EXPECT_EQ(sessions_dir({{"XDG_STATE_HOME", "/s"}}, "/home/a"), "/s/agentbox/sessions");
  EXPECT_EQ(sessions_dir({{"XDG_STATE_HOME", "relative"}}, "/home/a"),
            "/home/a/.local/state/agentbox/sessions");
}

TEST(Run, DescribeExit) {
  EXPECT_EQ(describe_exit(0), "exited with status 0");
  EXPECT_EQ(describe_exit(3), "exited with status 3");
  EXPECT_EQ(describe_exit(137), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(describe_exit(143), "killed by signal 15 (SIGTERM)");
  EXPECT_EQ(describe_exit(125), "exited with status 125");
}

}  // namespace
}  // namespace agentbox::app
