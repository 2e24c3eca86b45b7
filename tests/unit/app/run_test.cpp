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

// The end-of-run lines come from the report alone: the summaries in order, then the chain head
// and the last line, whose wording follows the typed end reason.
TEST(Run, RenderFollowsTheEndReason) {
  SessionReport r{.code = 137,
                  .reason = EndReason::exit,
                  .started = true,
                  .seconds = 1.5,
                  .command = "claude",
                  .id = "a1b2c3",
                  .dir = "/s/x",
                  .chain_head = "ab12",
                  .summary = {"network: 1"},
                  .review = {"review: 2"},
                  .telemetry = {"otlp: 3"}};
  auto lines = render(r);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "network: 1");
  EXPECT_EQ(lines[1], "review: 2");
  EXPECT_EQ(lines[2], "otlp: 3");
  EXPECT_EQ(lines[3],
            "audit chain head ab12 (`agentbox log --verify --head HEAD a1b2c3` checks the log)");
  EXPECT_EQ(lines[4],
            "`claude` killed by signal 9 (SIGKILL) after 1.5s; session a1b2c3; audit log: "
            "/s/x/audit.jsonl");
  r.program_exited = true;  // exit(137) is the program's own status
  EXPECT_NE(render(r).back().find("`claude` exited with status 137 after"), std::string::npos);
  r.reason = EndReason::timeout;
  r.code = 124;
  EXPECT_NE(render(r).back().find("was stopped by --timeout (status 124)"), std::string::npos);
  r.reason = EndReason::audit_failed;
  r.code = 125;
  EXPECT_NE(render(r).back().find("its audit log could not be written (status 125)"),
            std::string::npos);
  r.started = false;
  r.reason = EndReason::setup_failed;
  EXPECT_NE(render(r).back().find("did not run (status 125)"), std::string::npos);
  EXPECT_TRUE(render(SessionReport{}).empty());  // refused before the box: nothing to say
  EXPECT_EQ(to_string(EndReason::parent_ended), "parent ended");
  EXPECT_EQ(to_string(EndReason::sigterm), "SIGTERM");
}

}  // namespace
}  // namespace agentbox::app
