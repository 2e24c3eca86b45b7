// `agentbox run`: one session from a loaded policy to the program's exit status.
//
// Theory of operation: resolve who runs (uid, names, real home) and where (workspace: the git
// repository around the current directory unless the policy names one), turn the policy into a
// MountSpec, environment and LaunchSpec, open the session folder and its audit log, block the
// signals the event loop will read, start the box, relay the terminal or pass fds 0-2 through,
// forward signals, enforce the timeout, reap, remove placeholders, log session.end and print the
// summary. Everything before the clone is preparation; nothing is done twice.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/config/model.hpp"
#include "agentbox/sandbox/environment.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

struct RunRequest {
  config::Policy policy;
  std::vector<std::string> command;
  std::vector<std::string> config_files;  // what config::load read (for the audit log)
  bool quiet = false;
};

// Runs the session; returns the exit code for the agentbox process (the program's own, 128+N,
// 125 when agentbox failed, 126/127 when the command could not be executed). Errors are printed.
[[nodiscard]] int run(const RunRequest& request);

// The workspace a session with `policy` gets, canonical: the one the policy names, else the git
// repository around the current directory, else that directory. Refused when it is "/", the home
// directory or one of its ancestors. The CLI uses it to find the workspace's .agentbox.toml.
[[nodiscard]] base::Result<std::string> resolve_workspace(const config::Policy& policy);

// `agentbox explain -- CMD`: where CMD resolves on your PATH and what of its installation `run`
// would show in the box (program_install.hpp), one line each.
[[nodiscard]] std::vector<std::string> explain_program(const config::Policy& policy,
                                                       const std::string& command);

// Pieces of run() that are pure, exposed for tests.
// `~` and `~/x` expanded against `home`; anything else unchanged.
[[nodiscard]] std::string expand_home(const std::string& path, const std::string& home);
// The XDG state folder for sessions: $XDG_STATE_HOME/agentbox/sessions (default
// HOME/.local/state/agentbox/sessions).
[[nodiscard]] std::string sessions_dir(const std::map<std::string, std::string>& env,
                                       const std::string& home);
// "exited with status 3", "killed by signal 9 (SIGKILL)".
[[nodiscard]] std::string describe_exit(int code);

}  // namespace agentbox::app
