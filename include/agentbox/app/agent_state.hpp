// Agent state kept across sessions: per profile and per workspace, under the user's state dir.
//
// Theory of operation. HOME in the box is an empty tmpfs; a profile's `[persist] paths` name the
// HOME-relative directories an agent keeps between sessions (onboarding, history, caches):
//   1. the scope directory STATE/agentbox/state/<profile>/<key>, key = the first 16 hex digits of
//      SHA-256(workspace path), holds `workspace` (the path, for `agentbox state list`) and
//      home/<rel> for each persisted directory (0700, created by the supervisor, walked with
//      O_NOFOLLOW so no link the box planted is ever followed);
//   2. before each session and after it, the supervisor sanitizes it: `drop` paths are removed
//      (a link on the way is removed instead of followed) and `strip` keys are erased from JSON
//      files, so configuration that runs programs by itself (hooks, MCP servers, notify commands)
//      never carries over from one box session to the next; the host never reads these files;
//   3. the box gets home/<rel> bound read-write at HOME/<rel>, among the user's trees (a granted
//      read-only file inside it, such as ~/.claude/settings.json, lands on top).
// A directory only, never a single file: a bound file cannot be replaced by rename(2) (EBUSY),
// which is how agents save their state files.
//
// The per-user placeholder key (STATE/agentbox/placeholder.key, 32 random bytes, 0600) lives here
// too: placeholders derived from it stay the same across sessions (cred/placeholder.hpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

struct PersistSpec {
  std::string scope;               // the profile's name ("default" without one)
  std::string workspace;           // canonical
  std::vector<std::string> paths;  // "~/.claude"
  std::vector<std::string> drop;   // "~/.claude/settings.json"
  std::map<std::string, std::vector<std::string>> strip;  // file -> dotted keys ("a.*.b")
};

// STATE/agentbox, STATE = $XDG_STATE_HOME or HOME/.local/state.
[[nodiscard]] std::string agentbox_state_dir(const std::map<std::string, std::string>& env,
                                             const std::string& home);

// "~/.claude" -> ".claude"; empty when the path is not a plain HOME-relative path (no `.`, `..`
// or empty components, not HOME itself).
[[nodiscard]] std::string home_relative(const std::string& path);

// The scope directory of `spec` under `state_dir` (STATE/agentbox).
[[nodiscard]] std::string scope_dir(const std::string& state_dir, const PersistSpec& spec);

// Creates the scope directory and the persisted directories, sanitizes them, and returns the
// binds for the box (target HOME/<rel>, source the state copy).
[[nodiscard]] base::Result<std::vector<sandbox::Overlay>> prepare_persist(
    const std::string& state_dir, const PersistSpec& spec, const std::string& home);

// Step 2 alone (run again when the session ends). Returns what it removed or stripped, as
// HOME-relative paths, for the audit log.
[[nodiscard]] base::Result<std::vector<std::string>> sanitize_persist(const std::string& state_dir,
                                                                      const PersistSpec& spec);

// The per-user placeholder key, created on first use.
[[nodiscard]] base::Result<std::string> placeholder_key(const std::string& state_dir);

struct StateEntry {
  std::string scope;
  std::string key;
  std::string workspace;
  uint64_t bytes = 0;
};

// Every kept scope directory, sorted by profile then workspace.
[[nodiscard]] base::Result<std::vector<StateEntry>> list_state(const std::string& state_dir);
// Removes the state of `scope` (every workspace), or all of it when `scope` is empty. Returns
// the number of scope directories removed.
[[nodiscard]] base::Result<size_t> remove_state(const std::string& state_dir,
                                                const std::string& scope);

}  // namespace agentbox::app
