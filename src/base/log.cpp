// The human-facing stderr channel; one write(2) per line so lines from two processes never
// interleave.
#include "agentbox/base/log.hpp"

#include <unistd.h>

#include <atomic>
#include <string>

namespace agentbox::base::log {

namespace {
std::atomic<Level> g_level{Level::kNormal};
}

void set_level(Level lvl) {
  g_level.store(lvl, std::memory_order_relaxed);
}
Level level() {
  return g_level.load(std::memory_order_relaxed);
}

void write_line(std::string_view prefix, std::string_view text) {
  std::string line;
  line.reserve(prefix.size() + text.size() + 1);
  line.append(prefix).append(text).push_back('\n');
  // Best effort: a closed stderr must not take the supervisor down.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace agentbox::base::log
