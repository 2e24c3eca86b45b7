// Diagnostics for humans on stderr. The debug log (-v) and user-facing errors; never the audit log.
#pragma once

#include <fmt/core.h>

#include <string_view>

namespace agentbox::base::log {

enum class Level { kQuiet = 0, kNormal = 1, kVerbose = 2, kTrace = 3 };

void set_level(Level level);
[[nodiscard]] Level level();
[[nodiscard]] inline bool verbose() {
  return level() >= Level::kVerbose;
}

void write_line(std::string_view prefix, std::string_view text);

// `agentbox: <text>` at -v and above.
template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (verbose()) {
    write_line("agentbox: ", fmt::format(f, std::forward<Args>(args)...));
  }
}
// `agentbox: warning: <text>` unless --quiet.
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() >= Level::kNormal) {
    write_line("agentbox: warning: ", fmt::format(f, std::forward<Args>(args)...));
  }
}
// `agentbox: <text>` unless --quiet.
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() >= Level::kNormal) {
    write_line("agentbox: ", fmt::format(f, std::forward<Args>(args)...));
  }
}

}  // namespace agentbox::base::log
