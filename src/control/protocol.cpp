// The control protocol's strict codec (protocol.hpp). nlohmann-json in its non-throwing modes:
// parse with allow_exceptions=false, types checked before every get, dump with replacement.
#include "agentbox/control/protocol.hpp"

#include <fmt/core.h>

namespace agentbox::control {

using base::Error;
using base::Result;
using nlohmann::json;

std::string Request::arg(const std::string& key, const std::string& fallback) const {
  auto it = args.find(key);
  return it == args.end() ? fallback : it->second;
}

std::string dump(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

namespace {

bool is_word(std::string_view s) {
  if (s.empty() || s.size() > kMaxVerb) {
    return false;
  }
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || c == '-' || c == '_')) {
      return false;
    }
  }
  return true;
}

Result<json> parse_object(std::string_view line) {
  if (line.size() > kMaxLine) {
    return Error::msg(
        fmt::format("line of {} bytes exceeds the limit of {}", line.size(), kMaxLine));
  }
  json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error::msg("not a JSON object");
  }
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer() || v->get<int64_t>() != kVersion) {
    return Error::msg(fmt::format("\"v\" must be {}", kVersion));
  }
  return j;
}

base::Status read_args(const json& args, Request& out) {
  if (!args.is_object() || args.size() > kMaxArgs) {
    return Error::msg(fmt::format("\"args\" must be an object of at most {} strings", kMaxArgs));
  }
  for (const auto& [key, value] : args.items()) {
    if (!is_word(key) || !value.is_string() ||
        value.get_ref<const std::string&>().size() > kMaxArgValue) {
      return Error::msg(fmt::format("argument `{}` must be a string of at most {} bytes",
                                    dump(json(key)), kMaxArgValue));
    }
    out.args.emplace(key, value.get<std::string>());
  }
  return {};
}

}  // namespace

Result<Request> parse_request(std::string_view line) {
  AGENTBOX_ASSIGN_OR_RETURN(json j, parse_object(line));
  Request out;
  for (const auto& [key, value] : j.items()) {
    if (key == "v") {
      continue;
    }
    if (key == "verb") {
      if (!value.is_string() || !is_word(value.get_ref<const std::string&>())) {
        return Error::msg("\"verb\" must be a lowercase word");
      }
      out.verb = value.get<std::string>();
    } else if (key == "args") {
      AGENTBOX_TRY(read_args(value, out));
    } else {
      return Error::msg(fmt::format("unknown key {}", dump(json(key))));
    }
  }
  if (out.verb.empty()) {
    return Error::msg("\"verb\" is missing");
  }
  return out;
}

std::string encode_request(const Request& request) {
  json j = {{"v", kVersion}, {"verb", request.verb}};
  if (!request.args.empty()) {
    j["args"] = request.args;
  }
  return dump(j) + "\n";
}

std::string encode_ok(const json& result) {
  return dump(json{{"v", kVersion}, {"ok", true}, {"result", result}}) + "\n";
}

std::string encode_error(std::string_view message) {
  return dump(json{{"v", kVersion}, {"ok", false}, {"error", std::string(message)}}) + "\n";
}

}  // namespace agentbox::control
