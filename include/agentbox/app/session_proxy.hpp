// The session's L7 proxy, seen from app: credentials, the session CA, what the box must be shown
// so that its programs trust the CA and hold only placeholders, and the FlowHandler itself.
//
// Theory of operation:
//   create()   before the box exists: config credentials -> CredentialSet (every secret read
//              once, outside the box; placeholders made); HTTP rules; if anything must be
//              intercepted, the SessionCa (name-constrained to those hosts) and, in the session
//              folder, the merged trust bundle (system roots + CA) and a hashed CA directory.
//   box_env()  placeholders under the credentials' variable names, the trust variables common
//              clients read (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, ...) and a git credential helper
//              (GIT_CONFIG_COUNT/KEY/VALUE) that hands git the placeholder for basic-auth hosts.
//   overlays() the merged bundle over every distribution trust-store file the host has, and at
//              /etc/agentbox/ (read-only), so programs that ignore the variables trust it too.
//   make_handler()  once the event loop runs: the ProxyHandler every allowed flow goes to.
// The real secrets stay in this process; the audit log names credentials, never their values.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/config/model.hpp"
#include "agentbox/cred/credentials.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/net/connect.hpp"
#include "agentbox/net/flow.hpp"
#include "agentbox/policy/approval.hpp"
#include "agentbox/policy/egress.hpp"
#include "agentbox/proxy/session_budget.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

// Where the box finds the session's trust material (bound read-only from the session folder).
inline constexpr const char* kBoxTrustDir = "/etc/agentbox";
inline constexpr const char* kBoxBundle = "/etc/agentbox/ca-bundle.pem";
inline constexpr const char* kBoxCertDir = "/etc/agentbox/certs";

// Trust-store files of the distributions (Debian/Ubuntu/Arch, Fedora/RHEL, Alpine, openSUSE, the
// OpenSSL default file); the merged bundle is bound over those that exist on the host.
[[nodiscard]] const std::vector<std::string>& trust_store_files();
// The variables common TLS clients read for their CA file (each set to kBoxBundle).
[[nodiscard]] const std::vector<std::string>& trust_env_names();

class SessionProxy {
 public:
  // `caller_env`: the launching environment (env: credential sources). `home` expands `~`.
  // `session_dir`: the session folder (0700) where the bundle and CA directory are written.
  // `placeholder_key`: the per-user key placeholders are derived from (empty: random ones).
  [[nodiscard]] static base::Result<std::unique_ptr<SessionProxy>> create(
      const config::Policy& policy, const std::map<std::string, std::string>& caller_env,
      const std::string& home, const std::string& session_dir, audit::Sink& sink,
      std::string_view placeholder_key = {});
  ~SessionProxy();
  SessionProxy(const SessionProxy&) = delete;
  SessionProxy& operator=(const SessionProxy&) = delete;

  [[nodiscard]] std::vector<std::pair<std::string, std::string>> box_env() const;
  [[nodiscard]] std::vector<sandbox::Overlay> overlays() const;
  // Variables of the caller that hold a real secret (env: sources): never passed into the box.
  [[nodiscard]] const std::set<std::string>& secret_env_sources() const;
  // Everything must outlive the handler; `policy` and `overrides` belong to the SessionNetwork.
  [[nodiscard]] base::Result<std::unique_ptr<net::FlowHandler>> make_handler(
      event::Loop& loop, const policy::EgressPolicy& policy,
      const std::vector<net::ConnectTo>& overrides);
  // Revocation (the control socket, on the loop thread): the next request that would carry
  // credential `name` is blocked with a 403 saying so; the box keeps its placeholder. False
  // when the session has no such credential.
  bool revoke(const std::string& name);
  // Some credential says `ask`: its first use waits for `approver` (the session's queue, set by
  // the control socket; nullptr again before the queue goes: then such a use is refused).
  [[nodiscard]] bool asks() const;
  void use_approver(policy::Approver* approver);
  // Rotation (the control socket, on the loop thread): re-reads a file: or cmd: credential now
  // (CredentialSet::rotate); the outcome shows in credentials() once the read is done.
  [[nodiscard]] base::Status rotate(const std::string& name);
  // A credential's budget changed live (the control socket, on the loop thread; parsed by
  // CredentialSet::BudgetSetting's caller). An error when the session has no such credential.
  [[nodiscard]] base::Status set_credential_budget(const std::string& name,
                                                   const cred::CredentialSet::BudgetSetting& s);
  // The credentials, each with its state (revoked, being re-read, unavailable and why) and its
  // budgets (what it spent, its limits).
  [[nodiscard]] std::vector<cred::CredentialSet::State> credentials() const;
  // The session's budgets and model usage (the control socket reads and changes it on the loop
  // thread, between two proxy events).
  [[nodiscard]] proxy::SessionBudget& budget();
  // Stops the handler (call before the event loop goes away) and returns the exit-summary
  // lines (requests, denials, interceptions).
  [[nodiscard]] std::vector<std::string> finish();

  struct Impl;

 private:
  explicit SessionProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentbox::app
