// The session's control socket, seen from app: the verbs of docs/CONTROL.md wired to the box,
// the network and the proxy.
//
// Theory of operation: once the box runs, start() opens the socket (control::Server) in the
// user's runtime folder, named by the session's short id, and registers one handler per verb.
// Handlers run on the event loop's thread, so a change (allow, deny, revoke) reaches the
// objects the data path already consults (SessionNetwork's EgressPolicy, SessionProxy's
// CredentialSet) between two of its events, without locks; net and proxy never include
// control. Every change and every refused client is an audit event naming the peer's uid and
// pid. Destroyed (socket removed) before the network and the loop are torn down.
// Approvals: when the network asks about names (network.ask) or an exec rule says `ask`, the
// session's Approvals (the queue `agentbox approve` answers, verbs `approvals` and `approve`) is
// created here and handed to the network; run hands approver() to the exec guard. Destroying
// this denies every question still waiting. Without anything to ask, nothing is created.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agentbox/app/session_network.hpp"
#include "agentbox/app/session_proxy.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/event/loop.hpp"

namespace agentbox::app {

// The short id users type (`agentbox stop a1b2c3`): the random tail of the full id.
[[nodiscard]] std::string short_id(const std::string& id);

struct ControlInfo {
  std::string id;  // the full session id (session_dirs.hpp)
  std::vector<std::string> argv;
  std::string workspace;
  std::vector<std::string> config_files;
  std::string profile;                                      // the policy's profile name
  std::vector<std::pair<std::string, std::string>> labels;  // --label, [labels]
  std::string session_dir;                                  // holds audit.jsonl
  pid_t pid = 0;                                            // the box's init, as seen outside
  std::function<base::Status(int)> signal;  // to the box (init forwards it to the program)
  // Approvals (network.ask, exec rules' `ask`): how long a question waits (network.ask_timeout,
  // for every question of the session).
  std::chrono::milliseconds ask_timeout{60000};
  bool exec_asks = false;   // an [[exec.rule]] says `ask`
  bool learn = false;       // --learn: every question answered at once and recorded
  bool ask_desktop = true;  // network.ask_desktop: questions as desktop notifications too
  // The file "always" appends to; empty: the user's config file, from `env` (config/append.hpp).
  std::string user_config;
};

class SessionControl {
 public:
  [[nodiscard]] static base::Result<std::unique_ptr<SessionControl>> start(
      event::Loop& loop, ControlInfo info, const std::map<std::string, std::string>& env,
      audit::JsonlSink& sink, SessionNetwork* network, SessionProxy& proxy);
  ~SessionControl();
  SessionControl(const SessionControl&) = delete;
  SessionControl& operator=(const SessionControl&) = delete;

  [[nodiscard]] const std::string& socket_path() const;
  // The session's question queue; nullptr when nothing asks.
  [[nodiscard]] policy::Approver* approver() const;

  struct Impl;

 private:
  explicit SessionControl(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentbox::app
