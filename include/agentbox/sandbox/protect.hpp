// Protected workspace paths (.git/hooks, .git/config, .envrc, ...): what to mount read-only, and
// placeholders for those that do not exist yet.
//
// A path that does not exist cannot be a mountpoint, yet it must not become creatable inside the
// box (an agent writing .envrc or .vscode/tasks.json gets code run outside it later). So the
// supervisor creates an empty placeholder (a directory for directory-like names, else an empty
// file; `.git/commondir` holds "." because git dies on an empty one) before the box starts;
// init mounts it read-only, which also makes it impossible to remove, rename or replace with a
// symlink from inside (EBUSY/EROFS). Placeholders are removed
// when the session ends if they are still empty and still the inode we made. A supervisor killed
// by SIGKILL leaves them behind: empty, inert, and reused by the next run.
//
// Concurrent sessions on one workspace: a placeholder one box has mounted read-only must not be
// removed (or renamed away) by another session ending first: the kernel detaches a mount whose
// mountpoint is unlinked or renamed from another namespace, and the path becomes writable in the
// box that is still running. So, with a stash directory, every session registers its placeholders
// in `ws-<hash>.reg` (under an exclusive flock), holds a shared flock on `ws-<hash>.alive` while
// it lives, adopts the registered placeholders it finds in place, and only the session that can
// take `.alive` exclusively at its end (the last one alive) removes them all. A session killed by
// SIGKILL drops its locks with it; its placeholders are adopted and removed by the next ones.
//
// Recycling: with a stash directory (agentbox's state dir, `placeholders/`), the placeholders of a
// session are renamed into the stash at its end (slots f0..f23, d0..d23) and renamed back out by
// the next session instead of being created and deleted each time. Creating and deleting inodes was
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
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::sandbox {

// True for names protected as directories (.git/hooks, .vscode, .idea, a trailing '/').
[[nodiscard]] bool protected_is_dir(const std::string& rel);
// What a fresh placeholder file holds: nothing, except `.git/commondir` (".\n", see protect.cpp).
[[nodiscard]] std::string_view placeholder_content(const std::string& rel);

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
  std::string stash_dir;     // "" = no recycling and no sharing with concurrent sessions
  base::UniqueFd registry_;  // ws-<hash>.reg in the stash (see prepare_protected)
  base::UniqueFd alive_;     // ws-<hash>.alive, flock'ed shared while the session lives
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
