// A session's telemetry exporters, attached to its audit sink (session_telemetry.hpp).
#include "agentbox/app/session_telemetry.hpp"

#include <unistd.h>

#include <cctype>
#include <climits>

#include "agentbox/app/run.hpp"
#include "agentbox/base/error.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/cred/credentials.hpp"

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

// `telemetry.X (file:line:col)`, the context of an error in a value set there.
std::string where(std::string_view key, const config::Origin& o) {
  return fmt::format("telemetry.{} ({}:{}:{})", key, o.source, o.line, o.column);
}

// The exporter's options: the endpoint parsed, each otlp_headers_from value read from its source
// (the supervisor's environment, a file, a command: no secret needs to sit in the config).
Result<audit::OtlpOptions> otlp_options(const config::TelemetrySettings& settings,
                                        const SessionIdentity& who) {
  const auto& ep = *settings.otlp_endpoint;
  auto parsed = audit::parse_endpoint(ep.value);
  if (!parsed) {
    return std::move(parsed).error().context(where("otlp_endpoint", ep.origin));
  }
  audit::OtlpOptions o{.endpoint = *parsed,
                       .headers = settings.otlp_headers,
                       .resource = resource_attributes(who),
                       .max_queue_bytes = settings.otlp_queue.value};
  cred::SecretSource source([](const std::string& k) -> std::optional<std::string> {
    const char* v = ::getenv(k.c_str());
    return v == nullptr ? std::nullopt : std::optional<std::string>(v);
  });
  for (const auto& [name, from] : settings.otlp_headers_from) {
    auto value = source.read(expand_home(from.value, who.home));
    if (!value) {
      return std::move(value).error().context(where("otlp_headers_from." + name, from.origin));
    }
    if (value->find_first_of("\r\n") != std::string::npos) {
      return Error::msg(fmt::format("{}: the value read is not one header line",
                                    where("otlp_headers_from." + name, from.origin)));
    }
    o.headers.emplace_back(name, std::move(*value));
  }
  if (settings.otlp_ca) {
    if (!parsed->tls) {
      return Error::msg(fmt::format("{}: the endpoint `{}` is not https://",
                                    where("otlp_ca", settings.otlp_ca->origin), ep.value));
    }
    o.ca_file = expand_home(settings.otlp_ca->value, who.home);
  }
  return o;
}

}  // namespace

Result<std::unique_ptr<SessionTelemetry>> SessionTelemetry::attach(
    const config::TelemetrySettings& settings, const SessionIdentity& who, audit::JsonlSink& sink) {
  auto t = std::make_unique<SessionTelemetry>();
  if (settings.otlp_endpoint) {
    AGENTBOX_ASSIGN_OR_RETURN(audit::OtlpOptions o, otlp_options(settings, who));
    auto x = audit::OtlpExporter::make(std::move(o));
    if (!x) {
      const config::Origin& at =
          settings.otlp_ca ? settings.otlp_ca->origin : settings.otlp_endpoint->origin;
      return std::move(x).error().context(
          where(settings.otlp_ca ? "otlp_ca" : "otlp_endpoint", at));
    }
    t->endpoint_ = settings.otlp_endpoint->value;
    t->otlp_ = std::move(*x);
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
