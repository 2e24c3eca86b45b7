// Protected workspace paths (.git/hooks, .git/config, .envrc, ...): what to mount read-only, and
// placeholders for those that do not exist yet.
//
// A path that does not exist cannot be a mountpoint, yet it must not become creatable inside the
// box (an agent writing .envrc or .vscode/tasks.json gets code run outside it later). So the
// supervisor creates an empty placeholder (a directory for directory-like names, else an empty
// file) before the box starts; init mounts it read-only, which also makes it impossible to
// remove, rename or replace with a symlink from inside (EBUSY/EROFS). Placeholders are removed
// when the session ends if they are still empty and still the inode we made. A supervisor killed
// by SIGKILL leaves them behind: empty, inert, and reused by the next run.
//
// Recycling: with a stash directory (agentbox's state dir, `placeholders/`), the placeholders of a
// session are renamed into the stash at its end (slots f0..f7, d0..d7) and renamed back out by the
// next session instead of being created and deleted each time. Creating and deleting inodes was
// the largest part of `agentbox run`'s start-up on a busy filesystem (ext4 scans recently deleted
// inodes on every allocation: ~0.5 ms per placeholder here). A stashed entry is used only if,
// once in place, it is exactly what a fresh one would be (ours, empty, a single link, no special
// mode bits); anything else goes back to the stash as `quarantine-<inode>` and a fresh one is
// made. A rename across filesystems (EXDEV) just falls back to create/delete.
// A symlink anywhere in a protected path is never followed (openat2 RESOLVE_NO_SYMLINKS): the
// link itself is covered by a read-only empty file, so it can be neither followed to write nor
// replaced (see launcher.cpp).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::sandbox {

// True for names protected as directories (.git/hooks, .vscode, .idea, a trailing '/').
[[nodiscard]] bool protected_is_dir(const std::string& rel);

class Placeholders {
 public:
  struct Item {
    std::string path;  // absolute host path
    bool dir = false;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  Placeholders() = default;
  Placeholders(Placeholders&&) noexcept = default;
  Placeholders& operator=(Placeholders&&) noexcept = default;
  ~Placeholders() { remove(); }
  // Removes (or returns to the stash) what is still empty and ours, deepest first. Idempotent.
  void remove() noexcept;
  std::vector<Item> items;
  std::string stash_dir;  // "" = no recycling
};

struct ProtectedSet {
  std::vector<std::string> paths;  // workspace-relative paths to mount read-only
  Placeholders placeholders;
};

// Resolves each relative path under `workspace` without following symlinks and creates missing
// components as placeholders. A component that is a regular file (a worktree's `.git` file)
// protects that file instead of the path below it.
// `stash_dir` (optional) enables recycling (above); it need not exist yet.
[[nodiscard]] base::Result<ProtectedSet> prepare_protected(const std::string& workspace,
                                                           const std::vector<std::string>& rels,
                                                           const std::string& stash_dir = "");

}  // namespace agentbox::sandbox
