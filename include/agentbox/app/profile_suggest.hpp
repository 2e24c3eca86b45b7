// `agentbox profile suggest SESSION`: what a session was refused, read back from its audit log,
// as a reviewable TOML profile that would have allowed it, one comment per line saying what
// needed it. Nothing is applied: the user reads, edits and saves the text.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::app {

class ProfileSuggestion {
 public:
  // One JSON line of an audit log (a line that does not parse is skipped).
  void feed(std::string_view line);
  // The profile text; a comment alone when the session was refused nothing a rule can grant.
  [[nodiscard]] std::string render() const;
  [[nodiscard]] bool empty() const;

 private:
  struct Need {
    uint64_t count = 0;
    std::string first;  // the first time it was refused (the line's ts)
    std::set<std::string> why;
  };
  struct HttpNeed {
    std::set<std::string> methods;
    std::set<std::string> paths;
    std::set<std::string> rules;  // the rules that refused
    uint64_t count = 0;
  };
  void need(std::map<std::string, Need>& in, const std::string& key, const std::string& ts,
            const std::string& why);
  std::string session_;
  std::string program_;
  std::string workspace_;
  std::map<std::string, Need> hosts_;   // an egress rule as --allow takes it
  std::map<std::string, Need> groups_;  // a seccomp group, why: the syscalls and programs
  std::map<std::string, HttpNeed> http_;
  std::map<std::string, Need> notes_;  // refused, and no rule grants it: said as comments
};

// The suggestion for the audit log at `path`.
[[nodiscard]] base::Result<ProfileSuggestion> suggest_from_log(const std::string& path);

}  // namespace agentbox::app
