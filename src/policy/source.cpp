// A secret's source grammar (source.hpp): the one parser of it.
#include "agentbox/policy/source.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace agentbox::policy {

bool is_env_name(std::string_view s) {
  auto alpha = [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); };
  return !s.empty() && (alpha(s[0]) || s[0] == '_') &&
         std::all_of(s.begin(), s.end(),
                     [&](char ch) { return alpha(ch) || (ch >= '0' && ch <= '9') || ch == '_'; });
}

base::Result<SourceSpec> SourceSpec::parse(std::string_view s) {
  const size_t colon = s.find(':');
  const std::string_view kind = s.substr(0, colon);
  const std::string arg(colon == std::string_view::npos ? std::string_view() : s.substr(colon + 1));
  auto fail = [&](std::string_view why) {
    return base::Error::msg(fmt::format("`{}`: {}", s, why));
  };
  if (colon == std::string_view::npos || (kind != "env" && kind != "file" && kind != "cmd")) {
    return base::Error::msg(fmt::format("`{}` is not env:NAME, file:PATH or cmd:COMMAND", s));
  }
  if (kind == "env") {
    if (!is_env_name(arg)) {
      return fail(arg.empty() ? "names no variable"
                              : fmt::format("`{}` is not a variable name", arg));
    }
    return env(arg);
  }
  if (kind == "file") {
    if (arg.empty() || (arg[0] != '/' && arg[0] != '~')) {
      return fail("the path must be absolute or start with ~");
    }
    return file(arg);
  }
  if (arg.empty()) {
    return fail("names no command");
  }
  return cmd(arg);
}

std::string_view SourceSpec::kind_name() const {
  switch (kind) {
    case SourceKind::kEnv:
      return "env";
    case SourceKind::kFile:
      return "file";
    case SourceKind::kCmd:
      return "cmd";
  }
  return {};
}

std::string SourceSpec::to_string() const {
  return fmt::format("{}:{}", kind_name(), arg);
}

}  // namespace agentbox::policy
