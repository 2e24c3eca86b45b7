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
[[nodiscard]] base::Result<nlohmann::json> ask(const std::string& session,
                                               const control::Request& req);
// The audit log of a session, running (its control socket names it) or finished (the state
// folder); `session` with a `/` is taken as the log's path.
[[nodiscard]] base::Result<std::string> session_log(const std::string& session);
void register_log(CLI::App& app, int& exit_code);
// `agentbox profile suggest SESSION` (cli/profile.cpp).
void register_profile(CLI::App& app, int& exit_code);

}  // namespace agentbox::cli
