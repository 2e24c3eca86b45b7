// `agentbox doctor`: can this machine run a box? One line per kernel facility, with the fix.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace agentbox::app {

enum class CheckState { kOk, kWarn, kFail };

struct Check {
  std::string name;  // "user namespaces"
  CheckState state = CheckState::kOk;
  std::string detail;  // what was found
  std::string fix;     // the exact command or setting that fixes it; empty when ok
};

// Runs every check. Never throws, never needs privileges; probes run in short-lived children.
[[nodiscard]] std::vector<Check> run_doctor();

// Renders the checks as aligned lines: "ok    user namespaces: ..." plus "      fix: ...".
[[nodiscard]] std::string render_checks(const std::vector<Check>& checks);

// The hint printed when creating the box's namespaces failed with `err`: the same diagnosis as
// doctor's user-namespace check, so `run` and `doctor` never disagree.
[[nodiscard]] std::string userns_hint(int err);

// "" unless this process runs inside an agentbox box; then why a box cannot be made here (the
// hint of `agentbox run` inside agentbox, instead of a bare EPERM).
[[nodiscard]] std::string nested_box_hint();

// The fix for /dev/net/tun failing with `err` (doctor's check and run's hint share it).
[[nodiscard]] std::string tun_fix(int err);

// The fix when the box's /proc/sys is read-only or its /proc can't be mounted (a masked /proc),
// and when sethostname is refused in the box's own UTS namespace (a runtime's seccomp profile).
[[nodiscard]] std::string proc_fix();
[[nodiscard]] std::string hostname_fix();

// The container engine around this process, if any (doctor_container.cpp says how it is told).
enum class ContainerEngine { kNone, kKubernetes, kPodman, kDocker, kOther };
[[nodiscard]] ContainerEngine container_engine();
[[nodiscard]] std::string_view engine_name(ContainerEngine e);  // "a podman container"; "" none

// What the box needs of a container around it, each supplied by one setting of the engine.
enum class Facility { kUserns, kSeccomp, kProc, kTun, kAppArmor };
// The exact setting of engine `e` that supplies `f` ("" outside a container).
[[nodiscard]] std::string container_fix(ContainerEngine e, Facility f);

}  // namespace agentbox::app
