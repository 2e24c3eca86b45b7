// Session directories under the state dir: the running session's lock, and retention.
//
// Each session writes its audit log (and CA, caches) into STATE/agentbox/sessions/<id>, where the
// id starts with its UTC start time (20260101T120000Z-a1b2c3), so names sort by age. A running
// session holds an exclusive flock(2) on <id>/lock for its whole life (released by the kernel
// when the process dies, however it dies); pruning takes the same lock without waiting before it
// removes a directory, so a running session's directory is never removed.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::audit {
class Sink;
}  // namespace agentbox::audit

namespace agentbox::app {

struct Retention {
  uint64_t keep = 100;                    // the newest N session directories are kept
  uint64_t max_age_seconds = 30 * 86400;  // older ones are removed even within `keep`
};

// Creates `dir` (mode 0700, parents too) and takes the session's lock in it; the fd holds it.
[[nodiscard]] base::Result<base::UniqueFd> make_session_dir(const std::string& dir);

struct Pruned {
  std::vector<std::string> removed;  // directory names
  size_t running = 0;                // skipped: a running session holds its lock
  size_t failed = 0;                 // could not be removed (reported, not fatal)
};

// Removes the session directories under `root` beyond `r` (by count, then by age at `now`),
// never `current`, never one whose lock is held, never one younger than a minute without a lock
// (a session between mkdir and flock). Only names of the session-id form are considered.
Pruned prune_sessions(const std::string& root, const std::string& current, const Retention& r,
                      std::time_t now);

// prune_sessions, then the `session.prune` audit event and a warning for what could not be
// removed.
void prune_and_report(const std::string& root, const std::string& current, const Retention& r,
                      std::time_t now, audit::Sink& sink);

// The start time encoded in a session id, or -1 when `name` is not one.
[[nodiscard]] std::time_t session_start(const std::string& name);

// A fresh session id: the UTC start time and 24 random bits.
[[nodiscard]] std::string new_session_id();

}  // namespace agentbox::app
