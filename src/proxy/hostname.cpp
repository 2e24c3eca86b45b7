// Strict hostname grammar (see hostname.hpp).
#include "agentbox/proxy/hostname.hpp"

namespace agentbox::proxy {

namespace {

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

}  // namespace

std::optional<std::string> normalize_hostname(std::string_view name) {
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  if (name.empty() || name.size() > 253) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(name.size());
  size_t label_start = 0;
  bool label_all_digits = true;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      const size_t len = i - label_start;
      if (len == 0 || len > 63 || out[label_start] == '-' || out.back() == '-') {
        return std::nullopt;
      }
      if (i == name.size()) {
        break;
      }
      out.push_back('.');
      label_start = i + 1;
      label_all_digits = true;
      continue;
    }
    char c = name[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (!is_alnum(c) && c != '-') {
      return std::nullopt;
    }
    label_all_digits = label_all_digits && c >= '0' && c <= '9';
    out.push_back(c);
  }
  if (label_all_digits) {
    return std::nullopt;
  }
  return out;
}

}  // namespace agentbox::proxy
