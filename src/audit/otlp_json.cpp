// An audit line as an OTLP log record (OTLP/HTTP, JSON encoding: opentelemetry-proto's
// logs/v1 messages in proto3 JSON: 64-bit integers as strings, enums as numbers).
#include <fmt/format.h>

#include <iterator>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>

#include "agentbox/audit/export.hpp"

namespace agentbox::audit {

namespace {

using nlohmann::json;

// Audit fields with a name in the OpenTelemetry semantic conventions; the rest become
// `agentbox.<field>`. One table for every event type: a field means the same in each.
const std::unordered_map<std::string_view, std::string_view>& semconv() {
  static const std::unordered_map<std::string_view, std::string_view> m = {
      {"host", "server.address"},
      {"name", "server.address"},
      {"port", "server.port"},
      {"dst", "network.peer.address"},
      {"proto", "network.transport"},
      {"src_port", "client.port"},
      {"method", "http.request.method"},
      {"path", "url.path"},
      {"scheme", "url.scheme"},
      {"status", "http.response.status_code"},
      {"argv", "process.command_args"},
      {"pid", "process.pid"},
      {"exit", "process.exit.code"},
      {"uid", "process.user.id"},
      {"cwd", "process.working_directory"},
      {"model", "gen_ai.request.model"},
      {"provider", "gen_ai.provider.name"},
      {"input_tokens", "gen_ai.usage.input_tokens"},
      {"output_tokens", "gen_ai.usage.output_tokens"},
      {"cached_tokens", "gen_ai.usage.cache_read.input_tokens"},
  };
  return m;
}

// The fields every line has, carried elsewhere (resource, timestamp, event.name) or only for
// `agentbox log --verify` (the chain: the body keeps them).
bool carried_elsewhere(std::string_view k) {
  return k == "v" || k == "ts" || k == "session" || k == "type" || k == "prev" || k == "nonce";
}

// The payload is written straight into one string, record by record: a DOM of the whole batch
// (512 records) cost ~3x the CPU and held ~1 MiB while it was dumped (docs/BENCHMARKS.md, OTLP).

// A JSON string: ASCII escaped here; anything else through nlohmann's serializer, which
// replaces invalid UTF-8 (U+FFFD) rather than sending a collector a body it cannot parse.
void put_str(std::string& out, std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) {
      out += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
      return;
    }
  }
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  out += '"';
}

// An AnyValue (proto3 JSON: 64-bit integers as decimal strings).
void put_any(std::string& out, const json& v) {
  if (v.is_string()) {
    out += R"({"stringValue":)";
    put_str(out, v.get_ref<const std::string&>());
  } else if (v.is_boolean()) {
    out += v.get<bool>() ? R"({"boolValue":true)" : R"({"boolValue":false)";
  } else if (v.is_number_integer()) {
    fmt::format_to(std::back_inserter(out), R"({{"intValue":"{}")", v.get<int64_t>());
  } else if (v.is_number()) {
    out += R"({"doubleValue":)" + v.dump();
  } else if (v.is_array()) {
    out += R"({"arrayValue":{"values":[)";
    for (size_t i = 0; i < v.size(); ++i) {
      out += i == 0 ? "" : ",";
      put_any(out, v[i]);
    }
    out += "]}";
  } else {
    out += R"({"stringValue":)";
    put_str(out, v.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  out += '}';
}

void put_kv(std::string& out, std::string_view key, const json& value) {
  out += R"({"key":)";
  put_str(out, key);
  out += R"(,"value":)";
  put_any(out, value);
  out += '}';
}

// "2026-12-07T07:01:09.123Z" as nanoseconds since the epoch, in decimal (0 when malformed).
std::string unix_nanos(const std::string& ts) {
  struct tm t {};
  int ms = 0;
  if (ts.size() < 20 || ::strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &t) == nullptr) {
    return "0";
  }
  if (ts.size() >= 23 && ts[19] == '.') {
    ms = std::atoi(ts.substr(20, 3).c_str());
  }
  int64_t secs = ::timegm(&t);
  return std::to_string(secs * 1000000000LL + static_cast<int64_t>(ms) * 1000000LL);
}

// WARN for what was refused or lost, INFO otherwise (SeverityNumber: 9 INFO, 13 WARN).
bool is_warning(const std::string& type, const json& j) {
  static constexpr std::string_view kWarn[] = {
      "net.deny",          "net.drop",     "net.fail",        "proxy.drop",  "credential.blocked",
      "credential.budget", "seccomp.deny", "audit.truncated", "git.planted", "budget.exceeded"};
  for (std::string_view w : kWarn) {
    if (type == w) {
      return true;
    }
  }
  auto d = j.find("decision");
  if (d != j.end() && d->is_string() && *d == "denied") {
    return true;
  }
  auto r = j.find("result");
  return type == "dns.query" && r != j.end() && *r == "denied";
}

void put_record(std::string& out, const std::string& line) {
  std::string_view body(line);
  if (!body.empty() && body.back() == '\n') {
    body.remove_suffix(1);
  }
  out += R"({"body":{"stringValue":)";
  put_str(out, body);
  out += '}';
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    out += '}';
    return;
  }
  std::string type = j.value("type", "");
  bool warn = is_warning(type, j);
  fmt::format_to(std::back_inserter(out),
                 R"(,"timeUnixNano":"{}","severityNumber":{},"severityText":"{}","attributes":[)",
                 unix_nanos(j.value("ts", "")), warn ? 13 : 9, warn ? "WARN" : "INFO");
  put_kv(out, "event.name", "agentbox." + type);
  for (const auto& [k, v] : j.items()) {
    if (carried_elsewhere(k)) {
      continue;
    }
    auto it = semconv().find(k);
    std::string key = it != semconv().end() ? std::string(it->second) : "agentbox." + k;
    if (type == "dns.query" && k == "name") {
      key = "dns.question.name";  // the name asked, not a server's address
    }
    out += ',';
    put_kv(out, key, v);
  }
  out += "]}";
}

}  // namespace

std::string otlp_payload(std::span<const std::string> lines, const Attributes& resource) {
  std::string out = R"({"resourceLogs":[{"resource":{"attributes":[)";
  size_t bytes = 0;
  for (const auto& l : lines) {
    bytes += l.size();
  }
  out.reserve(bytes * 3 + 1024);
  for (size_t i = 0; i < resource.size(); ++i) {
    out += i == 0 ? "" : ",";
    put_kv(out, resource[i].first, resource[i].second);
  }
  out += R"(]},"scopeLogs":[{"scope":{"name":"agentbox.audit","version":"1"},"logRecords":[)";
  for (size_t i = 0; i < lines.size(); ++i) {
    out += i == 0 ? "" : ",";
    put_record(out, lines[i]);
  }
  out += "]}]}]}";
  return out;
}

}  // namespace agentbox::audit
