// Small text helpers shared by the proxy's parsers and rewriters (internal to src/proxy).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace agentbox::http::detail {

// The value of one hex digit, or -1.
inline int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// `s` without the spaces and tabs around it (HTTP's optional whitespace).
inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// Replaces every occurrence of `from` (non-empty) in `s`, left to right, never rescanning what
// was put in. Returns how many.
inline size_t replace_all(std::string& s, std::string_view from, std::string_view to) {
  size_t n = 0;
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
    ++n;
  }
  return n;
}

}  // namespace agentbox::http::detail
