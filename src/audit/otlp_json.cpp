// An audit line as an OTLP log record (OTLP/HTTP, JSON encoding: opentelemetry-proto's
// logs/v1 messages in proto3 JSON: 64-bit integers as strings, enums as numbers).
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

json any_value(const json& v) {
  if (v.is_string()) {
    return {{"stringValue", v}};
  }
  if (v.is_boolean()) {
    return {{"boolValue", v}};
  }
  if (v.is_number_integer()) {
    return {{"intValue", std::to_string(v.get<int64_t>())}};
  }
  if (v.is_number()) {
    return {{"doubleValue", v}};
  }
  if (v.is_array()) {
    json values = json::array();
    for (const auto& e : v) {
      values.push_back(any_value(e));
    }
    return {{"arrayValue", {{"values", values}}}};
  }
  return {{"stringValue", v.dump()}};
}

json kv(std::string_view key, json value) {
  return {{"key", key}, {"value", std::move(value)}};
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

json log_record(const std::string& line) {
  std::string_view body(line);
  if (!body.empty() && body.back() == '\n') {
    body.remove_suffix(1);
  }
  json rec = {{"body", {{"stringValue", body}}}};
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return rec;
  }
  std::string type = j.value("type", "");
  std::string ts = j.value("ts", "");
  rec["timeUnixNano"] = unix_nanos(ts);
  bool warn = is_warning(type, j);
  rec["severityNumber"] = warn ? 13 : 9;
  rec["severityText"] = warn ? "WARN" : "INFO";
  json attrs = json::array({kv("event.name", {{"stringValue", "agentbox." + type}})});
  for (const auto& [k, v] : j.items()) {
    if (carried_elsewhere(k)) {
      continue;
    }
    auto it = semconv().find(k);
    std::string key = it != semconv().end() ? std::string(it->second) : "agentbox." + k;
    if (type == "dns.query" && k == "name") {
      key = "dns.question.name";  // the name asked, not a server's address
    }
    attrs.push_back(kv(key, any_value(v)));
  }
  rec["attributes"] = std::move(attrs);
  return rec;
}

}  // namespace

std::string otlp_payload(std::span<const std::string> lines, const Attributes& resource) {
  json rattrs = json::array();
  for (const auto& [k, v] : resource) {
    rattrs.push_back(kv(k, {{"stringValue", v}}));
  }
  json records = json::array();
  for (const auto& line : lines) {
    records.push_back(log_record(line));
  }
  json scope = {{"scope", {{"name", "agentbox.audit"}, {"version", "1"}}},
                {"logRecords", std::move(records)}};
  json body = {{"resourceLogs", json::array({{{"resource", {{"attributes", rattrs}}},
                                              {"scopeLogs", json::array({scope})}}})}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace agentbox::audit
