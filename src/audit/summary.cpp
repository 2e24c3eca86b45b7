// The per-host and per-credential summary of an audit log (audit/summary.hpp).
#include "agentbox/audit/summary.hpp"

#include <fmt/core.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace agentbox::audit {

namespace {

using nlohmann::json;

uint64_t count(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

std::string text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

void add_usage(Use& u, const json& j) {
  u.has_usage = true;
  u.input_tokens += count(j, "input_tokens");
  u.output_tokens += count(j, "output_tokens");
  u.cached_tokens += count(j, "cached_tokens");
  // The proxy writes `cost` as a decimal string, or "unknown" for a model without a price.
  auto c = j.find("cost");
  if (c != j.end() && c->is_string()) {
    const std::string& s = c->get_ref<const std::string&>();
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    u.cost_usd += end != s.c_str() && *end == '\0' ? d : 0.0;
  }
}

std::string line_for(const std::string& what, const std::string& name, const Use& u,
                     bool with_flows) {
  std::string out =
      fmt::format("{} {}:", what, json(name).dump(-1, ' ', true, json::error_handler_t::replace));
  if (with_flows) {
    out += fmt::format(" {} connections,", u.connections);
  }
  out += fmt::format(" {} requests, {} bytes up, {} bytes down, {} denials", u.requests, u.bytes_up,
                     u.bytes_down, u.denials);
  if (u.has_usage) {
    out += fmt::format(", tokens {} in, {} out, {} cached, ${:.4f}", u.input_tokens,
                       u.output_tokens, u.cached_tokens, u.cost_usd);
  }
  return out;
}

// Whether a line can count, from its text: most lines of a long log (allowed DNS answers,
// opens, credential loads) are skipped without being parsed.
bool may_count(std::string_view line) {
  static constexpr std::string_view kTypes[] = {
      "\"type\":\"net.connect\"",       "\"type\":\"net.close\"",
      "\"type\":\"http.request\"",      "\"type\":\"net.deny\"",
      "\"type\":\"proxy.drop\"",        "\"type\":\"credential.blocked\"",
      "\"type\":\"credential.budget\"", "\"type\":\"model.usage\""};
  for (std::string_view t : kTypes) {
    if (line.find(t) != std::string_view::npos) {
      return true;
    }
  }
  return line.find("\"type\":\"dns.query\"") != std::string_view::npos &&
         line.find("\"result\":\"denied\"") != std::string_view::npos;
}

}  // namespace

void LogSummary::feed(std::string_view line) {
  if (!may_count(line)) {
    return;
  }
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return;
  }
  const std::string type = text(j, "type");
  const std::string host = !text(j, "host").empty() ? text(j, "host") : text(j, "name");
  const std::string cred = text(j, "credential");
  if (type == "net.connect") {
    ++hosts[host].connections;
  } else if (type == "net.close") {
    hosts[host].bytes_up += count(j, "bytes_up");
    hosts[host].bytes_down += count(j, "bytes_down");
  } else if (type == "http.request") {
    Use& h = hosts[host];
    ++h.requests;
    bool denied = text(j, "decision") == "denied";
    h.denials += denied ? 1 : 0;
    for (const auto& c : j.value("credentials", json::array())) {
      if (c.is_string()) {
        Use& u = credentials[c.get<std::string>()];
        ++u.requests;
        u.bytes_up += count(j, "bytes_up");
        u.bytes_down += count(j, "bytes_down");
        u.denials += denied ? 1 : 0;
      }
    }
  } else if (type == "net.deny" || type == "proxy.drop" ||
             (type == "dns.query" && text(j, "result") == "denied" && text(j, "qtype") != "AAAA")) {
    ++hosts[host].denials;  // glibc asks A and AAAA together: a denied name counts once
  } else if (type == "credential.blocked" || type == "credential.budget") {
    ++hosts[host].denials;
    ++credentials[cred].denials;
  } else if (type == "model.usage") {
    add_usage(hosts[host], j);
    for (const auto& c : j.value("credentials", json::array())) {
      if (c.is_string()) {
        add_usage(credentials[c.get<std::string>()], j);
      }
    }
    add_usage(models[text(j, "model")], j);
    ++models[text(j, "model")].requests;
  }
}

std::vector<std::string> LogSummary::render() const {
  std::vector<std::string> out;
  for (const auto& [name, u] : hosts) {
    if (!name.empty()) {
      out.push_back(line_for("host", name, u, true));
    }
  }
  for (const auto& [name, u] : credentials) {
    out.push_back(line_for("credential", name, u, false));
  }
  for (const auto& [name, u] : models) {
    out.push_back(line_for("model", name, u, false));
  }
  return out;
}

LogSummary summarize_log(const std::string& path) {
  LogSummary s;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    s.feed(line);
  }
  return s;
}

}  // namespace agentbox::audit
