// `agentbox profile suggest SESSION`: what a session was refused, read back from its audit log,
// as a reviewable TOML profile that would have allowed it, one comment per line saying what
// needed it. Nothing is applied: the user reads, edits and saves the text.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::app {

// A request path as a learned rule's glob (deterministic; docs/CONTROL.md, "Learning"): the query
// and fragment cut off, then each segment that names one object rather than a kind of object
// becomes `*` (one segment, never `/`): all digits, a UUID, 8 or more hex digits with a digit
// among them, 20 or more of [A-Za-z0-9_-] with a digit and a letter, or a segment holding `*`.
// "/v1/items/123?x=1" -> "/v1/items/*"; "/v1/items" stays.
[[nodiscard]] std::string learned_path_glob(std::string_view path);

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
  // The paths a learning run used with one method on one host (globs, learned_path_glob).
  struct Calls {
    std::set<std::string> paths;
    uint64_t count = 0;
    uint64_t unlisted = 0;  // paths past kMaxPaths, said as a comment
    std::string first;
  };
  static constexpr size_t kMaxPaths = 64;
  void need(std::map<std::string, Need>& in, const std::string& key, const std::string& ts,
            const std::string& why);
  void feed_net_deny(const std::string& ts, const nlohmann::json& j);
  void feed_learning(const std::string& type, const std::string& ts, const nlohmann::json& j);
  [[nodiscard]] bool egress_only(const nlohmann::json& j) const;
  [[nodiscard]] std::string render_allow() const;
  [[nodiscard]] std::string render_learned_rules() const;
  std::string session_;
  std::string program_;
  std::string workspace_;
  std::map<std::string, Need> hosts_;   // an egress rule as --allow takes it
  std::map<std::string, Need> groups_;  // a seccomp group, why: the syscalls and programs
  std::map<std::string, HttpNeed> http_;
  std::map<std::string, Need> notes_;  // refused, and no rule grants it: said as comments
  // A learning run (session.start says `"learn":true`): the names it admitted, the ports each
  // name was connected on (net.connect), and the methods and paths of the requests no HTTP rule
  // named (http.request allowed with no rule), by host and method.
  bool learning_ = false;
  std::map<std::string, Need> learned_;
  std::map<std::string, std::map<uint64_t, uint64_t>> ports_;
  std::map<std::string, std::map<std::string, Calls>> calls_;
  std::map<uint64_t, std::string> flow_rules_;  // a connection's egress rule, by its id
};

// The suggestion for the audit log at `path`.
[[nodiscard]] base::Result<ProfileSuggestion> suggest_from_log(const std::string& path);

}  // namespace agentbox::app
