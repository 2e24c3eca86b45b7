// Doctor: the rendering users read, and the probes on this machine.
#include "agentbox/app/doctor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
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
  // Seven facilities, and a first line naming the container engine when there is one.
  ASSERT_EQ(checks.size(), container_engine() == ContainerEngine::kNone ? 7u : 8u);
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
  auto userns = std::find_if(checks.begin(), checks.end(),
                             [](const Check& c) { return c.name == "user namespaces"; });
  ASSERT_NE(userns, checks.end());
  if (userns->state != CheckState::kOk) {
    testkit::skip("user namespaces unavailable: " + userns->detail);
    return;
  }
  EXPECT_NE(userns->detail.find("UTS and IPC"), std::string::npos) << userns->detail;
}

TEST(Doctor, HintAlwaysSaysWhatToDo) {
  EXPECT_FALSE(userns_hint(EPERM).empty());
}

// The container engine is told by its marker files, and each facility's fix names that engine's
// own setting (deploy/README.md; tests/container/rootless_podman.sh proves podman's).
TEST(Doctor, ContainerFixesNameTheEnginesSetting) {
  EXPECT_EQ(container_fix(ContainerEngine::kNone, Facility::kTun), "");
  EXPECT_NE(container_fix(ContainerEngine::kPodman, Facility::kProc).find("unmask=ALL"),
            std::string::npos);
  EXPECT_NE(container_fix(ContainerEngine::kDocker, Facility::kProc).find("systempaths=unconfined"),
            std::string::npos);
  EXPECT_NE(
      container_fix(ContainerEngine::kKubernetes, Facility::kProc).find("procMount: Unmasked"),
      std::string::npos);
  EXPECT_NE(container_fix(ContainerEngine::kKubernetes, Facility::kUserns).find("hostUsers: false"),
            std::string::npos);
  for (auto e : {ContainerEngine::kPodman, ContainerEngine::kDocker, ContainerEngine::kOther}) {
    EXPECT_NE(container_fix(e, Facility::kTun).find("--device /dev/net/tun"), std::string::npos);
    EXPECT_NE(container_fix(e, Facility::kSeccomp).find("container-seccomp.json"),
              std::string::npos);
    EXPECT_NE(container_fix(e, Facility::kAppArmor).find("apparmor=unconfined"), std::string::npos);
  }
}

}  // namespace
}  // namespace agentbox::app
