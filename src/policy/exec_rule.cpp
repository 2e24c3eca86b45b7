// Exec rules: parsing and matching (grammar in include/agentbox/policy/exec_rule.hpp).
#include "agentbox/policy/exec_rule.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>

namespace agentbox::policy {

using base::Error;
using base::Result;

std::string_view to_string(ExecAction a) {
  switch (a) {
    case ExecAction::allow:
      return "allow";
    case ExecAction::deny:
      return "deny";
    case ExecAction::ask:
      return "ask";
  }
  return "?";
}

std::optional<ExecAction> parse_exec_action(std::string_view s) {
  if (s == "allow") {
    return ExecAction::allow;
  }
  if (s == "deny") {
    return ExecAction::deny;
  }
  if (s == "ask") {
    return ExecAction::ask;
  }
  return std::nullopt;
}

namespace {

constexpr std::string_view kOutside = "@outside-workspace";

bool is_short_letter(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

// Splits on `|`, honouring `\|` (kept as `\|` so the glob sees an escaped bar).
std::vector<std::string> split_alternatives(std::string_view s) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out.back() += s[i];
      out.back() += s[++i];
    } else if (s[i] == '|') {
      out.emplace_back();
    } else {
      out.back() += s[i];
    }
  }
  return out;
}

Result<ArgPattern> parse_arg(std::string_view s, size_t index) {
  ArgPattern p{.alts = {}, .source = std::string(s)};
  for (auto& alt : split_alternatives(s)) {
    if (alt.empty()) {
      return Error::msg(
          fmt::format("argument pattern {} (`{}`) has an empty alternative", index + 1, s));
    }
    if (alt == kOutside) {
      p.alts.push_back({ArgAltKind::outside_workspace, {}});
    } else if (alt[0] == '@') {
      return Error::msg(fmt::format("argument pattern {}: unknown `{}`", index + 1, alt))
          .hint("the one @-pattern is @outside-workspace");
    } else if (alt.size() == 2 && alt[0] == '-' && is_short_letter(alt[1])) {
      p.alts.push_back({ArgAltKind::short_option, alt.substr(1)});
    } else if (alt.back() == '\\' && (alt.size() < 2 || alt[alt.size() - 2] != '\\')) {
      return Error::msg(
          fmt::format("argument pattern {} (`{}`) ends in a lone backslash", index + 1, s));
    } else {
      p.alts.push_back({ArgAltKind::glob, std::move(alt)});
    }
  }
  return p;
}

bool short_option_holds(std::string_view arg, char letter) {
  if (arg.size() < 2 || arg[0] != '-' || arg[1] == '-') {
    return false;
  }
  for (size_t i = 1; i < arg.size() && is_short_letter(arg[i]); ++i) {
    if (arg[i] == letter) {
      return true;
    }
  }
  return false;
}

bool within(std::string_view path, std::string_view dir) {
  if (dir == "/") {
    return true;
  }
  return path == dir ||
         (path.size() > dir.size() && path.substr(0, dir.size()) == dir && path[dir.size()] == '/');
}

bool alt_matches(const ArgAlt& alt, std::string_view arg, const ExecCall& call,
                 std::string_view workspace) {
  switch (alt.kind) {
    case ArgAltKind::glob:
      return exec_glob(alt.text, arg, false);
    case ArgAltKind::short_option:
      return short_option_holds(arg, alt.text[0]);
    case ArgAltKind::outside_workspace:
      return !arg.empty() && arg[0] != '-' && !workspace.empty() &&
             !within(normalize_path(call.cwd.empty() ? "/" : call.cwd, arg), workspace);
  }
  return false;
}

std::string base_name(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace

bool exec_glob(std::string_view pat, std::string_view text, bool path) {
  // Dynamic programming over the text, one pattern token at a time: O(|pattern| x |text|) with
  // no backtracking, whatever the box puts in an argument. reach[j]: the pattern so far matches
  // text[0, j). In path mode `*` and `?` never match `/`; `**` does.
  std::vector<char> reach(text.size() + 1, 0);
  std::vector<char> next(text.size() + 1, 0);
  reach[0] = 1;
  for (size_t p = 0; p < pat.size();) {
    std::fill(next.begin(), next.end(), 0);
    if (pat[p] == '*') {
      size_t run = 0;
      while (p < pat.size() && pat[p] == '*') {
        ++p;
        ++run;
      }
      const bool crosses = !path || run >= 2;
      for (size_t j = 0; j <= text.size(); ++j) {
        next[j] = static_cast<char>(reach[j] != 0 ||
                                    (j > 0 && next[j - 1] != 0 && (crosses || text[j - 1] != '/')));
      }
    } else {
      const bool any = pat[p] == '?';
      char want = pat[p];
      if (want == '\\' && p + 1 < pat.size()) {
        want = pat[++p];
      }
      ++p;
      for (size_t j = 0; j < text.size(); ++j) {
        const bool ok = any ? (!path || text[j] != '/') : text[j] == want;
        next[j + 1] = static_cast<char>(reach[j] != 0 && ok);
      }
    }
    reach.swap(next);
  }
  return reach[text.size()] != 0;
}

Result<ExecRule> parse_exec_rule(std::string_view program, const std::vector<std::string>& args,
                                 std::string_view action) {
  ExecRule r;
  if (program.empty()) {
    return Error::msg("`program` is empty");
  }
  if (program.find('/') != std::string_view::npos && program[0] != '/') {
    return Error::msg(fmt::format("`program`: `{}` is a relative path", program))
        .hint("write a name (`git`, matched after symlinks) or an absolute path glob");
  }
  r.program = std::string(program);
  r.by_path = program[0] == '/';
  for (size_t i = 0; i < args.size(); ++i) {
    AGENTBOX_ASSIGN_OR_RETURN(ArgPattern p, parse_arg(args[i], i));
    r.args.push_back(std::move(p));
  }
  auto a = parse_exec_action(action);
  if (!a) {
    return Error::msg(fmt::format("`action`: `{}` is not an action", action))
        .hint("expected \"allow\", \"deny\" or \"ask\"");
  }
  r.action = *a;
  return r;
}

std::string ExecRule::describe() const {
  std::string out = program;
  for (const auto& a : args) {
    out += " " + a.source;
  }
  return out;
}

bool program_matches(const ExecRule& rule, const ExecCall& call) {
  const std::string& path = call.path.empty() ? call.given : call.path;
  return rule.by_path ? exec_glob(rule.program, path, true)
                      : exec_glob(rule.program, base_name(path), false);
}

bool args_match(const ExecRule& rule, const ExecCall& call, std::string_view workspace) {
  // Greedy earliest match finds an ordered subsequence whenever one exists.
  size_t next = 1;
  for (const auto& pat : rule.args) {
    bool found = false;
    for (; next < call.argv.size() && !found; ++next) {
      found = std::any_of(pat.alts.begin(), pat.alts.end(), [&](const ArgAlt& alt) {
        return alt_matches(alt, call.argv[next], call, workspace);
      });
    }
    if (!found) {
      return false;
    }
  }
  return true;
}

ExecVerdict ExecPolicy::decide(const ExecCall& call) const {
  bool guarded = false;  // a deny/ask rule names this program
  for (size_t i = 0; i < rules_.size(); ++i) {
    const ExecRule& r = rules_[i];
    if (!program_matches(r, call)) {
      continue;
    }
    guarded = guarded || r.action != ExecAction::allow;
    if (args_match(r, call, workspace_)) {
      return {r.action, static_cast<int>(i), fmt::format("rule `{}`", r.describe())};
    }
  }
  if (call.truncated && guarded) {
    return {ExecAction::deny, -1, "argv over the checked bound"};
  }
  return {};
}

std::string normalize_path(std::string_view base, std::string_view rel) {
  std::string joined =
      rel.empty() || rel[0] != '/' ? fmt::format("{}/{}", base, rel) : std::string(rel);
  std::vector<std::string_view> parts;
  std::string_view s = joined;
  while (!s.empty()) {
    size_t slash = s.find('/');
    std::string_view part = s.substr(0, slash);
    s = slash == std::string_view::npos ? std::string_view() : s.substr(slash + 1);
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      if (!parts.empty()) {
        parts.pop_back();
      }
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (auto p : parts) {
    out += '/';
    out += p;
  }
  return out.empty() ? "/" : out;
}

std::string shell_quote(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) {
      out += ' ';
    }
    bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
      auto u = static_cast<unsigned char>(c);
      return std::isalnum(u) != 0 || std::string_view("-_./=:,+@%").find(c) != std::string::npos;
    });
    bool control = std::any_of(a.begin(), a.end(), [](char c) {
      auto u = static_cast<unsigned char>(c);
      return u < 0x20 || u == 0x7f;
    });
    if (plain) {
      out += a;
    } else if (control) {
      out += "$'";
      for (char c : a) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || c == '\'' || c == '\\') {
          out += fmt::format("\\x{:02x}", u);
        } else {
          out += c;
        }
      }
      out += '\'';
    } else {
      out += '\'';
      for (char c : a) {
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      }
      out += '\'';
    }
  }
  return out;
}

}  // namespace agentbox::policy
