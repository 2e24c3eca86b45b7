// HTTP rules: which methods and paths a host allows on the intercepted path, and body caps (pure).
//
// A host named by at least one rule is allow-listed by its rules: a request must match one rule
// (method in its list or the list empty; path matching one of its globs or the list empty).
// Otherwise it is denied, and the denial names the rule(s) for that host so the agent (and the
// user reading the audit log) knows which line of which file said no. Path globs: `*` matches
// within one segment (no `/`), `**` matches anything (also `/`), every other byte is literal.
// Paths are compared as sent, before the query; a path that could mean something else to the
// upstream than to the glob (dot segments, raw or percent-encoded, an encoded `/` or `\`) is
// refused wherever a path glob applies, because the upstream would normalize it past the rule.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/policy/host.hpp"

namespace agentbox::http {

struct HttpRuleSpec {
  std::string origin;                // where it was written ("profile.toml:12:1"), for denials
  std::string host;                  // policy::HostPattern grammar
  std::vector<std::string> methods;  // empty: any (CONNECT/TRACE/TRACK are refused regardless)
  std::vector<std::string> paths;    // globs; empty: any
  std::optional<uint64_t> max_body;  // request body cap in bytes
};

struct RuleVerdict {
  bool named = false;                // some rule names the host (it must be intercepted)
  bool allowed = true;               // the request may go on
  std::string rule;                  // origin of the rule that allowed, or of the ones that denied
  std::optional<uint64_t> max_body;  // of the allowing rule
  std::string why;                   // when denied and not a plain mismatch ("dot segment ...")
};

class HttpRules {
 public:
  HttpRules() = default;
  // Every host pattern must parse; methods are upper-cased.
  [[nodiscard]] static base::Result<HttpRules> create(std::vector<HttpRuleSpec> specs);

  // `host` canonical, `method` as sent, `target` the request-target (origin- or absolute-form).
  [[nodiscard]] RuleVerdict check(std::string_view host, std::string_view method,
                                  std::string_view target) const;
  [[nodiscard]] bool names(std::string_view host) const;
  [[nodiscard]] std::vector<std::string> host_patterns() const;
  [[nodiscard]] bool empty() const { return rules_.empty(); }

 private:
  struct Rule {
    HttpRuleSpec spec;
    policy::HostPattern pattern;
  };
  std::vector<Rule> rules_;
};

// `*` within a segment, `**` across segments, everything else literal.
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view path);
// The path of a request-target: origin-form up to `?`/`#`; absolute-form without scheme and
// authority; "*" as is.
[[nodiscard]] std::string_view target_path(std::string_view target);
// For the audit log: the path with query parameter names kept and values dropped
// ("/s?q=secret&x" -> "/s?q=&x"), fragment removed, capped at 512 bytes.
[[nodiscard]] std::string audit_path(std::string_view target);

}  // namespace agentbox::http
