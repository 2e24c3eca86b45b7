// `agentbox doctor`: can this machine run a box? One line per kernel facility, with the fix.
#pragma once

#include <string>
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

}  // namespace agentbox::app
