// The session's guard of git metadata: before the box, the repository's layout is checked (a
// `.git/commondir` that redirects is refused), the files git reads to decide what to run that
// the default set cannot name in advance are added to the protected paths (the config's
// includes, `config.worktree`), and a linked worktree's main repository is shown (objects and
// refs writable, its config, hooks and metadata protected). After the box: the workspace is
// scanned for planted repositories, gitlinks and keys (sandbox/git_scan.hpp), reported on
// stderr even with -q and in the audit log (`git.planted`).
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/sandbox/git_meta.hpp"

namespace agentbox::app {

class GitGuard {
 public:
  [[nodiscard]] static base::Result<GitGuard> prepare(const std::string& workspace,
                                                      const std::string& home);
  // Workspace-relative paths to protect besides the default set.
  [[nodiscard]] const std::vector<std::string>& workspace_paths() const { return ws_rels_; }
  // A linked worktree's common directory (MAIN/.git), shown read-write; "" otherwise.
  [[nodiscard]] const std::string& common_dir() const { return common_; }
  // Paths under common_dir() to protect.
  [[nodiscard]] const std::vector<std::string>& common_paths() const { return common_rels_; }
  // The session-end scan: findings on stderr (always) and in the audit log. Returns how many.
  size_t finish(const std::string& session, audit::Sink& sink) const;

 private:
  sandbox::GitLayout layout_;
  std::string ws_;
  std::string common_;
  time_t since_ = 0;
  std::vector<std::string> ws_rels_;
  std::vector<std::string> common_rels_;
};

}  // namespace agentbox::app
