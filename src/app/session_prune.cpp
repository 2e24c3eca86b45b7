// Removing old session folders and saying so (session_dirs.hpp); apart from session_dirs.cpp,
// whose unqualified try_lock() must not meet std::try_lock through audit.hpp's <mutex>.
#include <fmt/core.h>

#include "agentbox/app/session_dirs.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/base/log.hpp"

namespace agentbox::app {

void prune_and_report(const std::string& root, const std::string& current, const Retention& r,
                      std::time_t now, audit::Sink& sink) {
  Pruned pruned = prune_sessions(root, current, r, now);
  if (!pruned.removed.empty() || pruned.failed != 0) {
    sink.emit(audit::Event("session.prune")
                  .strs("removed", pruned.removed)
                  .num("running", static_cast<int64_t>(pruned.running))
                  .num("failed", static_cast<int64_t>(pruned.failed)));
  }
  if (pruned.failed != 0) {
    base::log::warn("{} old session folder{} under {} could not be removed", pruned.failed,
                    pruned.failed == 1 ? "" : "s", root);
  }
}

}  // namespace agentbox::app
