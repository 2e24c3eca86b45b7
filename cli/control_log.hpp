// `agentbox log` and what the control verbs share (cli/control.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <string>

#include "agentbox/base/result.hpp"
#include "agentbox/control/protocol.hpp"

namespace agentbox::cli {

// The caller's environment as a map (runtime folder, state folder).
[[nodiscard]] std::map<std::string, std::string> caller_env();
// Asks the running session `session` (short or full id); a clear error when none runs.
[[nodiscard]] base::Result<nlohmann::json> ask(const std::string& session, control::Request req);
void register_log(CLI::App& app, int& exit_code);

}  // namespace agentbox::cli
