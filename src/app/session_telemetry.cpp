// A session's telemetry exporters, attached to its audit sink (session_telemetry.hpp).
#include "agentbox/app/session_telemetry.hpp"

#include <unistd.h>

#include <cctype>
#include <climits>

#include "agentbox/base/error.hpp"
#include "agentbox/base/log.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;

audit::Attributes resource_attributes(const SessionIdentity& who) {
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof host - 1) != 0) {
    host[0] = '\0';
  }
  audit::Attributes a = {{"service.name", "agentbox"},      {"host.name", host},
                         {"user.name", who.user},           {"agentbox.session.id", who.session},
                         {"agentbox.profile", who.profile}, {"agentbox.workspace", who.workspace}};
  for (const auto& [k, v] : who.labels) {
    a.emplace_back("agentbox.label." + k, v.value);
  }
  return a;
}

namespace {

// A label key as a journal field name: upper case, `.` and `-` as `_` (keys are [a-z0-9_.-]).
std::string journal_name(const std::string& key) {
  std::string out = "AGENTBOX_LABEL_";
  for (char ch : key) {
    out += ch == '.' || ch == '-' ? '_' : static_cast<char>(std::toupper(ch));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<SessionTelemetry>> SessionTelemetry::attach(
    const config::TelemetrySettings& settings, const SessionIdentity& who, audit::JsonlSink& sink) {
  auto t = std::make_unique<SessionTelemetry>();
  if (settings.otlp_endpoint) {
    const auto& ep = *settings.otlp_endpoint;
    auto parsed = audit::parse_endpoint(ep.value);
    if (!parsed) {
      return std::move(parsed).error().context(fmt::format("telemetry.otlp_endpoint ({}:{}:{})",
                                                           ep.origin.source, ep.origin.line,
                                                           ep.origin.column));
    }
    audit::OtlpOptions o{.endpoint = *parsed,
                         .headers = settings.otlp_headers,
                         .resource = resource_attributes(who),
                         .max_queue_bytes = settings.otlp_queue.value};
    t->endpoint_ = ep.value;
    t->otlp_ = std::make_unique<audit::OtlpExporter>(std::move(o));
    sink.observe([e = t->otlp_.get()](std::string_view line) { e->push(line); });
  }
  if (settings.journald.value) {
    audit::Attributes fields = {{"AGENTBOX_PROFILE", who.profile},
                                {"AGENTBOX_WORKSPACE", who.workspace}};
    for (const auto& [k, v] : who.labels) {
      fields.emplace_back(journal_name(k), v.value);
    }
    std::string path = audit::JournaldWriter::socket_path();
    auto w = audit::JournaldWriter::open(path, std::move(fields));
    if (w) {
      t->journal_ = std::make_unique<audit::JournaldWriter>(std::move(*w));
      sink.observe([j = t->journal_.get()](std::string_view line) { j->send(line); });
    } else {
      base::log::warn("telemetry.journald: no journal to write to: {}", w.error().message());
    }
  }
  return t;
}

SessionTelemetry::~SessionTelemetry() = default;

void SessionTelemetry::started() {
  if (otlp_) {
    if (auto r = otlp_->start(); !r) {
      base::log::warn("telemetry: {}", r.error().message());
    }
  }
}

void SessionTelemetry::report(audit::Sink& sink) {
  if (!otlp_ && !journal_) {
    return;
  }
  audit::Event ev("telemetry.export");
  if (otlp_) {
    audit::ExportStats s = otlp_->stats();
    ev.str("otlp_endpoint", endpoint_)
        .num("otlp_sent", static_cast<int64_t>(s.sent))
        .num("otlp_dropped", static_cast<int64_t>(s.dropped));
    if (!s.last_error.empty()) {
      ev.str("otlp_error", s.last_error);
    }
  }
  if (journal_) {
    ev.num("journald_sent", static_cast<int64_t>(journal_->sent()))
        .num("journald_dropped", static_cast<int64_t>(journal_->dropped()));
  }
  sink.emit(ev);
}

std::vector<std::string> SessionTelemetry::finish() {
  std::vector<std::string> out;
  if (otlp_) {
    audit::ExportStats s = otlp_->stop(std::chrono::milliseconds(2000));
    out.push_back(fmt::format("telemetry: {} of {} events sent to {}, {} dropped{}", s.sent,
                              s.queued, endpoint_, s.dropped,
                              s.last_error.empty() ? "" : fmt::format(" ({})", s.last_error)));
  }
  if (journal_) {
    out.push_back(fmt::format("telemetry: {} events to the journal, {} dropped", journal_->sent(),
                              journal_->dropped()));
  }
  return out;
}

}  // namespace agentbox::app
