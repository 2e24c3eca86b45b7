// `agentbox run`: one session from a loaded policy to the program's exit status.
//
// Theory of operation: make the supervisor safe to hold secrets (no core dumps, not dumpable),
// make sure fds 0-2 are open, watch the parent, then one app::Session (session.hpp): prepared
// (everything before the clone), run (box, control socket, network, supervision) and finished
// (session.end). What it reports, the CLI prints. Nothing is done twice.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agentbox/app/session_report.hpp"
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

// Runs the session. The report's code is the exit code for the agentbox process (the program's
// own, 128+N, 124 timeout, 125 when agentbox failed, 126/127 when the command could not be
// executed); errors and warnings are printed as they happen, the summary is the report's.
[[nodiscard]] SessionReport run(const RunRequest& request);

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
// A secret source with a file: path's `~` expanded the same way; env: and cmd: unchanged.
[[nodiscard]] policy::SourceSpec expand_home(policy::SourceSpec from, const std::string& home);
// The XDG state folder for sessions: $XDG_STATE_HOME/agentbox/sessions (default
// HOME/.local/state/agentbox/sessions).
[[nodiscard]] std::string sessions_dir(const std::map<std::string, std::string>& env,
                                       const std::string& home);
// "exited with status 3", "killed by signal 9 (SIGKILL)".
[[nodiscard]] std::string describe_exit(int code);

}  // namespace agentbox::app
