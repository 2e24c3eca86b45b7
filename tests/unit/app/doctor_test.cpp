// Doctor: the rendering users read, and the probes on this machine.
#include "agentbox/app/doctor.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

#include "testkit/skip.hpp"

namespace agentbox::app {
namespace {

TEST(Doctor, RendersAlignedStatesWithFixLines) {
  std::vector<Check> checks{
      {.name = "a", .state = CheckState::kOk, .detail = "fine"},
      {.name = "b", .state = CheckState::kWarn, .detail = "meh", .fix = "do x"},
      {.name = "c", .state = CheckState::kFail, .detail = "broken", .fix = "do y"},
  };
  EXPECT_EQ(render_checks(checks),
            "ok    a: fine\n"
            "warn  b: meh\n"
            "      fix: do x\n"
            "fail  c: broken\n"
            "      fix: do y\n");
}

TEST(Doctor, EveryCheckHasDetailAndFailuresHaveAFix) {
  auto checks = run_doctor();
  ASSERT_EQ(checks.size(), 6u);
  for (const Check& c : checks) {
    EXPECT_FALSE(c.name.empty());
    EXPECT_FALSE(c.detail.empty()) << c.name;
    if (c.state != CheckState::kOk) {
      EXPECT_FALSE(c.fix.empty()) << c.name;
    }
  }
}

// The box cannot exist without user namespaces: on a machine where CI must work, doctor agrees.
TEST(Doctor, UserNamespacesWorkWhereTheyMust) {
  auto checks = run_doctor();
  if (checks[0].state != CheckState::kOk) {
    testkit::skip("user namespaces unavailable: " + checks[0].detail);
    return;
  }
  EXPECT_EQ(checks[0].name, "user namespaces");
}

TEST(Doctor, HintAlwaysSaysWhatToDo) {
  EXPECT_FALSE(userns_hint(EPERM).empty());
}

}  // namespace
}  // namespace agentbox::app
