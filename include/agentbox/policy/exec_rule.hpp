// Exec rules (`[[exec.rule]]`): which programs, with which arguments, the box may execute.
//
// Theory of operation: config parses each rule once with parse_exec_rule() and hands an
// ExecPolicy to the session; the exec guard (sandbox/exec_guard.hpp) reads every execve and
// execveat of the box (held by seccomp user notification), resolves the program's path in the
// box's view and asks decide(). The first rule that matches gives the action; no match allows.
//
// Grammar (docs/CONFIG.md, "Exec rules"):
//   program  a name without `/`: a glob over the base name of the executed file after every
//            symlink is resolved (`git` matches /usr/bin/git, a link named `g` to it, and
//            /usr/bin/../bin/git alike); with `/`: an absolute glob over that resolved path,
//            where `*` and `?` stay within one component and `**` crosses `/`.
//   args     patterns that must match arguments (argv[1..]) in this order, not necessarily
//            adjacent: ["push", "--force*"] matches `git push origin --force`. Each pattern is
//            alternatives split by `|` (`\|` is a literal bar), each one of:
//              -X                  a short option letter: matches `-X` and any bundle of short
//                                  options that holds it (`-fu`, `-uf`), never `--X...`
//              @outside-workspace  an operand (not starting with `-`) whose path, made absolute
//                                  against the caller's working directory and normalized
//                                  lexically (no symlinks followed), is outside the workspace
//              anything else       a glob over the whole argument: `*` any run, `?` one
//                                  character, `\` escapes the next one
//   action   "allow", "deny" or "ask" (ask a person through policy::Approver; deny when none).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::policy {

enum class ExecAction : uint8_t { allow, deny, ask };

[[nodiscard]] std::string_view to_string(ExecAction a);
[[nodiscard]] std::optional<ExecAction> parse_exec_action(std::string_view s);

enum class ArgAltKind : uint8_t { glob, short_option, outside_workspace };

struct ArgAlt {
  ArgAltKind kind = ArgAltKind::glob;
  std::string text;  // the glob, or the option letter
};

struct ArgPattern {
  std::vector<ArgAlt> alts;
  std::string source;  // as written, for messages and the audit log
};

struct ExecRule {
  std::string program;  // as written
  bool by_path = false;
  std::vector<ArgPattern> args;
  ExecAction action = ExecAction::deny;
  std::string origin;  // "file:line:col", for the audit log

  // "git push --force*|-f" as the audit log and `explain` show it.
  [[nodiscard]] std::string describe() const;
};

// One clear Error naming the part that is wrong (the program, or argument N).
[[nodiscard]] base::Result<ExecRule> parse_exec_rule(std::string_view program,
                                                     const std::vector<std::string>& args,
                                                     std::string_view action);

// What the guard read of one exec.
struct ExecCall {
  std::string path;               // resolved, in the box's view ("" if it could not be)
  std::string given;              // the path as the caller passed it
  std::vector<std::string> argv;  // argv[0..], bounded
  bool truncated = false;         // argv was longer than the guard reads
  std::string cwd;                // the caller's working directory (box view)
};

struct ExecVerdict {
  ExecAction action = ExecAction::allow;
  int rule = -1;       // index of the rule that decided, -1: none matched
  std::string reason;  // why, for the audit log ("rule ...", "argv over the checked bound")
};

class ExecPolicy {
 public:
  ExecPolicy() = default;
  ExecPolicy(std::vector<ExecRule> rules, std::string workspace)
      : rules_(std::move(rules)), workspace_(std::move(workspace)) {}
  [[nodiscard]] bool empty() const { return rules_.empty(); }
  [[nodiscard]] const std::vector<ExecRule>& rules() const { return rules_; }
  // First matching rule wins. A truncated argv that matched no rule, where a deny or ask rule
  // names this program, is denied: arguments past the bound could have matched it.
  [[nodiscard]] ExecVerdict decide(const ExecCall& call) const;

 private:
  std::vector<ExecRule> rules_;
  std::string workspace_;
};

// Building blocks, exposed for tests.
[[nodiscard]] bool exec_glob(std::string_view pattern, std::string_view text, bool path);
[[nodiscard]] bool program_matches(const ExecRule& rule, const ExecCall& call);
[[nodiscard]] bool args_match(const ExecRule& rule, const ExecCall& call,
                              std::string_view workspace);
// "/a/./b/../c" -> "/a/c"; `rel` joined to `base` when it is not absolute.
[[nodiscard]] std::string normalize_path(std::string_view base, std::string_view rel);
// argv as a shell would need it typed: 'quoted' where needed, control bytes as $'\xNN'.
[[nodiscard]] std::string shell_quote(const std::vector<std::string>& argv);

}  // namespace agentbox::policy
