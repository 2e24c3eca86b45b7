// The control protocol: one JSON object per line each way, versioned ("v":1). docs/CONTROL.md.
//
// A request is {"v":1,"verb":"NAME","args":{"KEY":"VALUE",...}} ("args" optional, every value a
// string); nothing else is accepted: an unknown key, a wrong type, a line over kMaxLine bytes or
// a version other than 1 is refused with an error response, and the connection stays usable.
// A response is {"v":1,"ok":true,"result":{...}} or {"v":1,"ok":false,"error":"one line"}.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"

namespace agentbox::control {

inline constexpr int kVersion = 1;
inline constexpr size_t kMaxLine = 8192;      // a request line, newline excluded
inline constexpr size_t kMaxVerb = 32;        // verb names are short words
inline constexpr size_t kMaxArgs = 16;        // keys in "args"
inline constexpr size_t kMaxArgValue = 1024;  // one argument's bytes

struct Request {
  std::string verb;
  std::map<std::string, std::string> args;

  // The value of `key`, or `fallback` when absent.
  [[nodiscard]] std::string arg(const std::string& key, const std::string& fallback = {}) const;
};

// Strict decoding of one line (without its newline). Never throws.
[[nodiscard]] base::Result<Request> parse_request(std::string_view line);
// One line, newline included. Invalid UTF-8 in strings is replaced, never thrown on.
[[nodiscard]] std::string encode_request(const Request& request);
[[nodiscard]] std::string encode_ok(const nlohmann::json& result);
[[nodiscard]] std::string encode_error(std::string_view message);

// JSON text that never throws (invalid UTF-8 replaced).
[[nodiscard]] std::string dump(const nlohmann::json& j, int indent = -1);

}  // namespace agentbox::control
