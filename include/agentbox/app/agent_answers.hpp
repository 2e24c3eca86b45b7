// A profile's `persist.answers` (config/answers.hpp) made into read-only files for the box.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/config/model.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

// For each answered file: the user's own file (HOME/<rel> on the host, when there is one) with
// the profile's keys on top, written to `session_dir` and shown read-only at HOME/<rel>. A user
// file that cannot be read or parsed is an error (the agent would not start as the user expects).
[[nodiscard]] base::Result<std::vector<sandbox::Overlay>> prepare_answers(
    const std::map<std::string, config::Sourced<std::string>>& answers, const std::string& home,
    const std::string& workspace, const std::string& session_dir);

}  // namespace agentbox::app
