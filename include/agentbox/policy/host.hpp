// Host names and host patterns: strict grammar, lowercase, label-wise matching.
//
// A NUL byte inside a hostname once passed a peer's suffix check and connected to the attacker's
// host; so names are validated strictly before any comparison, and patterns are compared label by
// label, never as substrings.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agentbox::policy {

inline constexpr size_t kMaxNameLength = 253;
inline constexpr size_t kMaxLabelLength = 63;

// Validates and normalizes a DNS host name: ASCII letters, digits, '-' and '_' only; labels of
// 1..63 characters not starting or ending with '-'; at most 253 characters; one trailing dot
// allowed and removed; lowercased. Address literals (see looks_like_ip_literal) are not names.
// nullopt if `s` is not a valid name.
[[nodiscard]] std::optional<std::string> normalize_name(std::string_view s);

// "example.com" (exact) or "*.example.com" (one or more labels below example.com, never
// example.com itself).
class HostPattern {
 public:
  [[nodiscard]] static std::optional<HostPattern> parse(std::string_view s);
  // `name` must already be normalized (normalize_name).
  [[nodiscard]] bool matches(std::string_view name) const;
  [[nodiscard]] bool wildcard() const { return wildcard_; }
  [[nodiscard]] const std::string& base() const { return base_; }
  [[nodiscard]] std::string to_string() const { return wildcard_ ? "*." + base_ : base_; }
  bool operator==(const HostPattern&) const = default;

 private:
  std::string base_;                 // normalized
  std::vector<std::string> labels_;  // base_ split, for label-wise comparison
  bool wildcard_ = false;
};

}  // namespace agentbox::policy
