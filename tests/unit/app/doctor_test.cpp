// Doctor: the rendering users read, and the probes on this machine.
#include "agentbox/app/doctor.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

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
    if (std::getenv("AGENTBOX_MUST_WORK") != nullptr) {
      FAIL() << "user namespaces unavailable: " << checks[0].detail;
    }
    GTEST_SKIP() << "skipped: user namespaces unavailable: " << checks[0].detail;
  }
  EXPECT_EQ(checks[0].name, "user namespaces");
}

TEST(Doctor, HintAlwaysSaysWhatToDo) {
  EXPECT_FALSE(userns_hint(EPERM).empty());
}

}  // namespace
}  // namespace agentbox::app
