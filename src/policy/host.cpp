// Host name grammar and label-wise pattern matching.
#include "agentbox/policy/host.hpp"

#include "agentbox/policy/ip.hpp"

namespace agentbox::policy {

namespace {

bool label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

std::vector<std::string> split_labels(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      dot = s.size();
    }
    out.emplace_back(s.substr(start, dot - start));
    start = dot + 1;
  }
  return out;
}

}  // namespace

std::optional<std::string> normalize_name(std::string_view s) {
  if (!s.empty() && s.back() == '.') {
    s.remove_suffix(1);
  }
  if (s.empty() || s.size() > kMaxNameLength || looks_like_ip_literal(s)) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(s.size());
  size_t label_len = 0;
  for (char raw : s) {
    char c = (raw >= 'A' && raw <= 'Z') ? static_cast<char>(raw - 'A' + 'a') : raw;
    if (c == '.') {
      if (label_len == 0 || out.back() == '-') {
        return std::nullopt;  // empty label or trailing hyphen
      }
      label_len = 0;
      out.push_back(c);
      continue;
    }
    if (!label_char(c) || (label_len == 0 && c == '-') || ++label_len > kMaxLabelLength) {
      return std::nullopt;
    }
    out.push_back(c);
  }
  if (label_len == 0 || out.back() == '-') {
    return std::nullopt;
  }
  return out;
}

std::optional<HostPattern> HostPattern::parse(std::string_view s) {
  HostPattern p;
  if (s.size() >= 2 && s[0] == '*' && s[1] == '.') {
    p.wildcard_ = true;
    s.remove_prefix(2);
  }
  if (!s.empty() && s.back() == '.') {
    return std::nullopt;  // patterns are written without the root dot
  }
  auto base = normalize_name(s);
  if (!base) {
    return std::nullopt;
  }
  p.base_ = *base;
  p.labels_ = split_labels(p.base_);
  return p;
}

bool HostPattern::matches(std::string_view name) const {
  auto labels = split_labels(name);
  if (labels.size() < labels_.size() + (wildcard_ ? 1 : 0)) {
    return false;
  }
  if (!wildcard_ && labels.size() != labels_.size()) {
    return false;
  }
  size_t off = labels.size() - labels_.size();
  for (size_t i = 0; i < labels_.size(); ++i) {
    if (labels[off + i] != labels_[i]) {
      return false;
    }
  }
  for (size_t i = 0; i < off; ++i) {
    if (labels[i].empty()) {
      return false;
    }
  }
  return true;
}

}  // namespace agentbox::policy
