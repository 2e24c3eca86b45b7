// A session's telemetry (docs/TELEMETRY.md): the audit log's lines to an OTLP/HTTP collector and
// to the systemd journal, as configured under [telemetry], named by session, profile, workspace,
// user, host and labels.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/audit/export.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/config/model.hpp"

namespace agentbox::app {

struct SessionIdentity {
  std::string session;
  std::string profile;
  std::string workspace;
  std::string user;
  std::vector<std::pair<std::string, config::Sourced<std::string>>> labels;
  std::string home;  // for a `~/` in telemetry.otlp_ca
};

class SessionTelemetry {
 public:
  // Nothing configured: an object that does nothing. A bad endpoint, CA file or header source
  // is an error naming where it was set; journald configured without a journal is a warning.
  [[nodiscard]] static base::Result<std::unique_ptr<SessionTelemetry>> attach(
      const config::TelemetrySettings& settings, const SessionIdentity& who,
      audit::JsonlSink& sink);
  ~SessionTelemetry();
  // Starts the exporter's thread: after the box is cloned (no thread while the supervisor forks).
  void started();
  // Before session.end: one "telemetry.export" event with the counts so far.
  void report(audit::Sink& sink);
  // After session.end: sends what it can for 2 s, then one summary line per destination.
  std::vector<std::string> finish();

 private:
  std::string endpoint_;
  std::unique_ptr<audit::OtlpExporter> otlp_;
  std::unique_ptr<audit::JournaldWriter> journal_;
};

// The resource attributes of a session (service.name, host.name, user.name, agentbox.*).
[[nodiscard]] audit::Attributes resource_attributes(const SessionIdentity& who);

}  // namespace agentbox::app
