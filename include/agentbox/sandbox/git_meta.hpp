// Git metadata as the host's git will read it: config files, the index's gitlinks, gitfiles and
// `commondir`. Pure parsers plus small file readers; used to decide what to protect before the
// box starts and what to report after it ends (docs/CONFINEMENT.md, "Git metadata").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::sandbox {

// One `key = value` of a git config file. `key` is "section.name" or "section.subsection.name";
// section and name lowercased as git compares them, the subsection kept as written. A key
// without `=` (git's boolean true) has the value "".
struct GitConfigEntry {
  std::string key;
  std::string value;
};

// Parses git-config syntax (sections, quoted subsections, the old `[a.b]` form, quoted values,
// escapes, `\` line continuations, `#`/`;` comments). Malformed lines are skipped: the caller
// wants every key git could see, never an error.
[[nodiscard]] std::vector<GitConfigEntry> parse_git_config(std::string_view text);

// True when git runs `value` (or a program it names) for `key`: core.fsmonitor, core.hooksPath,
// core.pager, core.sshCommand, core.editor, diff.external, filter.*, credential.helper,
// include.path, includeIf.*.path, a `!` alias, an `ext::` remote url, ... (git-config(1)).
[[nodiscard]] bool git_key_runs_code(const std::string& key, const std::string& value);

// The paths of the gitlinks (mode 160000 entries) of a git index file's bytes (versions 2-4,
// SHA-1 or SHA-256 object names). `shared_index` receives the hex name of a split index's
// shared part (`.git/sharedindex.<hex>`) when the index has a `link` extension.
[[nodiscard]] std::vector<std::string> index_gitlinks(std::string_view index, size_t oid_size,
                                                      std::string* shared_index = nullptr);

// Small, bounded whole-file read without following a final link ("" when it cannot be read or
// is larger than `max`).
[[nodiscard]] std::string read_small_file(const std::string& path, size_t max = 1u << 20);

// `gitdir: PATH` of a gitfile's text, resolved against `dir` (the gitfile's directory); "" when
// the text is not a gitfile.
[[nodiscard]] std::string gitfile_target(std::string_view text, const std::string& dir);

// The repository around the workspace, as git would find it from there.
struct GitLayout {
  enum class Kind { kNone, kDir, kLinkedWorktree, kOtherGitfile };
  Kind kind = Kind::kNone;
  std::string gitdir;  // absolute, canonical ("" for kNone)
  std::string common;  // the common directory (= gitdir except for a linked worktree)
};

// Reads `WORKSPACE/.git`. Refuses (an error naming the file) a `.git/commondir` that names
// anything but the repository itself, and a gitfile whose git directory claims a commondir but
// is not a linked worktree of a repository (`MAIN/.git/worktrees/NAME`, whose `gitdir` points
// back at this workspace's `.git`): either would make the host's git read config and hooks from
// a directory the box chose.
[[nodiscard]] base::Result<GitLayout> inspect_git(const std::string& workspace);

// The files a repository's config includes (include.path, includeIf.*.path), followed
// recursively (bounded), as absolute paths; `~/` expanded with `home`.
[[nodiscard]] std::vector<std::string> git_config_includes(const std::string& config_path,
                                                           const std::string& home);

}  // namespace agentbox::sandbox
