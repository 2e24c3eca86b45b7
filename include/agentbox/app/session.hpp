// One session: the box, the network stack, the proxy and the control socket with one lifecycle.
//
// Theory of operation:
//   prepare()  everything before the clone (session_prepare.cpp): who runs and where (user,
//              workspace, grants, the program's installation, protected paths), the session
//              folder and its audit log, review and agent state, the proxy (credentials, CA),
//              the mount plan, the environment, the confinement and the network's plan.
//   run()      (session.cpp) the event loop and its signals, the box started; once it runs the
//              control socket, then the network, then supervision (session_supervise.cpp:
//              terminal relay, signals, --timeout, the parent's end, reaping); then finish():
//              network and proxy stopped, placeholders removed, agent state sanitized, the git
//              scan, review, `session.end` with the typed EndReason, telemetry. The result is a
//              SessionReport that the CLI renders (session_report.hpp).
// Diagnostics (errors, warnings) are printed as they happen; the summary is the report's.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agentbox/app/agent_state.hpp"
#include "agentbox/app/program_install.hpp"
#include "agentbox/app/run.hpp"
#include "agentbox/app/session_confinement.hpp"
#include "agentbox/app/session_git.hpp"
#include "agentbox/app/session_network.hpp"
#include "agentbox/app/session_proxy.hpp"
#include "agentbox/app/session_report.hpp"
#include "agentbox/app/session_review.hpp"
#include "agentbox/app/session_telemetry.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/sandbox/launcher.hpp"
#include "agentbox/sandbox/protect.hpp"

namespace agentbox::app {

class Session {
 public:
  using Env = std::map<std::string, std::string>;
  // Everything before the clone. `req` and `env` must outlive the session; `parent`: a pidfd of
  // the process that started agentbox, or none (watch_parent()); `t0`: when `run` started.
  [[nodiscard]] static base::Result<std::unique_ptr<Session>> prepare(
      const RunRequest& req, const Env& env, base::UniqueFd parent,
      std::chrono::steady_clock::time_point t0);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Runs the box to its end and tears the session down; once.
  [[nodiscard]] SessionReport run();

 private:
  Session(const RunRequest& req, const Env& env) : req_(req), env_(env) {}

  // session_prepare.cpp
  base::Status prepare_paths();
  base::Status open_log();
  base::Result<std::vector<sandbox::Overlay>> keep_state();
  base::Status prepare_proxy();
  void plan_mounts(std::vector<sandbox::Overlay> persisted);
  void plan_environment();
  base::Status prepare_confinement();
  base::Status prepare_network();

  // session.cpp
  void log_start();
  void start_failed(base::Error err, const sandbox::LaunchFailure& failure);
  void supervise_box(sandbox::Box& box);
  void finish_network(SessionReport& r);
  void finish_workspace(SessionReport& r);
  void finish_log(SessionReport& r);

  // session_supervise.cpp: relay, signals, timeout, reap.
  struct Outcome {
    int code = 125;
    EndReason reason = EndReason::exit;
    std::string terminal;  // what the terminal filter dropped, for the summary
  };
  Outcome supervise(sandbox::Box& box);

  const RunRequest& req_;
  const Env& env_;
  std::chrono::steady_clock::time_point t0_;
  base::UniqueFd parent_;  // pidfd of the process that started agentbox (die_with_parent)

  sandbox::UserInfo user_;
  std::string cwd_;
  std::string workspace_;
  std::vector<sandbox::Grant> grants_;
  ProgramInstall program_;  // what of the command's installation the box is shown
  sandbox::ProtectedSet protect_;
  GitGuard git_;                       // the repository's layout; the session-end scan
  sandbox::ProtectedSet git_protect_;  // a linked worktree's main repository
  sandbox::LaunchSpec launch_;
  std::string id_;
  std::string dir_;
  base::UniqueFd lock_;  // flock on dir/lock while the session runs (session_dirs.hpp)
  std::unique_ptr<SessionTelemetry> telemetry_;  // observes the sink: declared first, outlives it
  std::unique_ptr<audit::JsonlSink> sink_;
  std::unique_ptr<SessionConfinement> confinement_;  // Landlock, caps, seccomp, rlimits, cgroup
  std::unique_ptr<SessionProxy> proxy_;              // credentials, session CA, L7 handler
  std::unique_ptr<SessionNetwork> network_;          // the tap in the box, the stack out here
  std::string state_dir_;                            // STATE/agentbox
  PersistSpec persist_;                              // the agent state kept (agent_state.hpp)
  std::vector<sandbox::Overlay> answers_;            // persist.answers (agent_answers.hpp)
  std::optional<SessionReview> review_;              // --review (session_review.hpp)

  // Set while it runs. Declared last, so destroyed first: as when it was a local of run(), the
  // objects above stop watching in their finish steps and never touch it from a destructor.
  std::optional<event::Loop> loop_;
  event::WatchId signals_ = 0;
  // How it ended so far.
  int code_ = 125;
  EndReason reason_ = EndReason::exit;
  std::string limit_;
  std::string error_;
  bool started_ = false;
  bool net_failed_ = false;
  std::string terminal_;
};

// A pidfd of the process that started agentbox when the policy says to die with it (else none):
// when it ends, the box ends too, as bubblewrap's --die-with-parent.
[[nodiscard]] base::UniqueFd watch_parent(const config::Policy& policy);

}  // namespace agentbox::app
