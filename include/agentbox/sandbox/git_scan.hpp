// The session-end check of the workspace for git metadata the box planted: nested repositories
// (a `.git` directory or gitfile, a bare repository's layout), gitlinks added to the index
// outside .gitmodules, and, in repositories written during the session, config keys that run
// commands and hooks.
//
// Why a scan and not only protection: the workspace is the box's to write, and a repository is
// just files. Git's own metadata of the workspace is protected (mount_plan.cpp), but a nested
// repository the box creates (or one that was there, whose config it edits) is ordinary content;
// the host's git enters it when the user cds there, and the outer `git status` recurses into a
// gitlink's repository and runs its fsmonitor.
//
// What is done with a finding (docs/CONFINEMENT.md, "Git metadata", says why): every finding is
// reported; a repository that appeared during the session AND carries something that runs code
// is quarantined: its `.git` (or a bare one's `HEAD`) is renamed to
// `NAME.agentbox-quarantined-<session>`, which no git recognises, so nothing in it can run until
// the user looks and renames it back. A repository that existed before is never renamed (it is
// the user's checkout); what changed in it is reported with the key and value.
// "During the session" is the inode's ctime, which the box cannot set back (utimensat sets
// atime and mtime only).
#pragma once

#include <ctime>
#include <string>
#include <vector>

namespace agentbox::sandbox {

struct GitFinding {
  enum class Kind { kRepository, kGitfile, kGitlink, kConfigKey, kHook, kCommondir };
  Kind kind = Kind::kRepository;
  std::string path;            // absolute host path
  std::string detail;          // "core.fsmonitor = touch /tmp/x", "gitdir: ../x", ...
  std::string quarantined_as;  // the new name when renamed aside, else ""
};

struct GitScan {
  std::vector<GitFinding> findings;
  size_t entries = 0;      // directory entries looked at
  bool truncated = false;  // stopped at the bound: what lies beyond was not checked
};

// `own_gitdir`: the workspace's own git directory (protected; not walked). `since`: the
// session's start (wall clock, seconds). `session`: names quarantined entries.
[[nodiscard]] GitScan scan_git_plants(const std::string& workspace, const std::string& own_gitdir,
                                      time_t since, const std::string& session);

[[nodiscard]] const char* git_finding_name(GitFinding::Kind k);

}  // namespace agentbox::sandbox
