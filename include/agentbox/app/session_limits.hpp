// The session's resource limits: the config's limits -> a session cgroup when one can be made,
// else rlimits, and the one line that says at start what is weaker without a cgroup.
#pragma once

#include <optional>
#include <string>

#include "agentbox/base/result.hpp"
#include "agentbox/config/model.hpp"
#include "agentbox/sandbox/limits.hpp"

namespace agentbox::app {

struct SessionLimits {
  std::optional<sandbox::SessionCgroup> cgroup;
  sandbox::Limits rlimits;     // what the program runs under (fallbacks included)
  std::optional<double> cpus;  // asked; enforced only by a cgroup with a cpu controller
  std::string no_cgroup_why;   // why no cgroup could be made ("" when there is one)
  // The one line said once the box has started (not before: a start that fails says only why):
  // what is weaker without a cgroup. "" with a cgroup.
  std::string start_note;
  // limits.cpu_priority = "background": the nice of the box's session autogroup, which init
  // writes (LaunchSpec::autogroup_nice); -1 for "normal".
  int autogroup_nice = -1;
};

// Creates the session cgroup (memory, pids and, when asked, cpus; the box always gets its own
// CPU group where the cgroup has a cpu controller) or falls back to rlimits: pids -> RLIMIT_NPROC
// (per box since Linux 5.14, not for root), memory -> RLIMIT_AS when asked for explicitly,
// RLIMIT_DATA for the built-in default (per process). An explicit limit that is not enforced
// at all is warned about here, even with -q; what is weaker goes to `start_note`.
[[nodiscard]] SessionLimits plan_session_limits(const std::string& session_id,
                                                const config::Limits& limits);

}  // namespace agentbox::app
