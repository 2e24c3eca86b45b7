// Review mode (`agentbox run --review`, docs/REVIEW.md): the workspace is an overlay whose writes
// land in a per-session upper directory; `diff`, `apply` and `discard` act on it afterwards.
//
// Theory of operation:
//   1. run: create_review() makes STATE/agentbox/review/<session-id>/{upper,work} and records the
//      workspace, the start (the ctime of the `started` file: the clock the kernel stamps files
//      with) and the session's protected paths; the mount plan mounts overlayfs (lower = the real
//      workspace) in place of the workspace bind; the review lock is held while the box runs.
//   2. scan(): walks the upper directory (plain files, whiteouts = char device 0/0, opaque
//      directories = user.overlay.opaque "y") against the real workspace and lists the changes,
//      each classified (added, modified, deleted, mode, symlink) and flagged when dangerous.
//   3. apply(): per change, refuses one whose real file changed since the start (ctime) unless
//      forced, applies dangerous ones only when named, moves the upper file in (renamed over
//      the old one, which stays linked under replaced/) or writes temp + rename, and drops what it
//      applied from the upper directory. discard() removes the session's directory.
//   4. Commits made by the box's git: app/review_git.hpp (apply --refs).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::app {

struct Review {
  std::string id;         // the session id
  std::string root;       // STATE/agentbox/review/<id>
  std::string upper;      // root/upper
  std::string work;       // root/work
  std::string workspace;  // the real workspace (the overlay's lower directory)
  struct timespec started {};
  std::vector<std::string> protected_paths;  // workspace-relative, as the session protected them
};

// STATE/agentbox/review.
[[nodiscard]] std::string review_root(const std::string& state_dir);

// Makes the session's review directory; the returned fd holds its lock while the box runs.
[[nodiscard]] base::Result<base::UniqueFd> create_review(const std::string& state_dir,
                                                         const std::string& id,
                                                         const std::string& workspace,
                                                         const std::vector<std::string>& protect,
                                                         Review& out);

// Opens the review of session `id` (a full id or a unique prefix of one).
[[nodiscard]] base::Result<Review> open_review(const std::string& state_dir, const std::string& id);
// Every review session kept, oldest first.
[[nodiscard]] base::Result<std::vector<Review>> list_reviews(const std::string& state_dir);
// The review's lock without waiting: fails while its box still runs.
[[nodiscard]] base::Result<base::UniqueFd> lock_review(const Review& r);

enum class ChangeKind { kAdded, kModified, kDeleted, kMode };
enum class EntryType { kFile, kDir, kSymlink, kOther };

struct Change {
  std::string path;  // workspace-relative
  ChangeKind kind = ChangeKind::kModified;
  EntryType type = EntryType::kFile;  // the new entry's type (the old one's for kDeleted)
  uint64_t size = 0;                  // new size (kDeleted: 0)
  uint64_t old_size = 0;              // size in the real workspace (kAdded: 0)
  mode_t mode = 0;                    // new permission bits
  mode_t old_mode = 0;
  nlink_t nlink = 0;  // the upper entry's links and owner (apply moves a file in only when it
  uid_t uid = 0;      // has one link and is the caller's)
  std::string link;   // kSymlink: the link text
  std::string renamed_from;  // an added file whose bytes equal a deleted one's
  bool opaque = false;       // a directory the box removed and made anew (lower hidden)
  std::string danger;        // why it is dangerous; empty when it is not
};

// The changes of `r`, parents before children, deletions included.
[[nodiscard]] base::Result<std::vector<Change>> scan(const Review& r);

// Why `c` is dangerous (runs code on the host later, or reaches outside the workspace), or "".
[[nodiscard]] std::string danger_of(const Change& c, const std::vector<std::string>& protect);

// `s` with control bytes written \xNN: the box names the files, and a name must not drive the
// user's terminal (escape sequences) when the summary or diff prints it.
[[nodiscard]] std::string shown(std::string_view s);

// "A  src/new.c (1.2 KiB)", "M  .git/HEAD (41 B -> 45 B)  DANGEROUS: git metadata".
[[nodiscard]] std::string describe(const Change& c);
// The summary at the end of a review session: counts, then one line per change (at most
// `max_lines`, then "... and N more"), dangerous ones first.
[[nodiscard]] std::vector<std::string> summary_lines(const Review& r,
                                                     const std::vector<Change>& changes,
                                                     size_t max_lines);

// The names in directory `dir` (without . and ..), sorted.
[[nodiscard]] std::vector<std::string> entries_of(int dir);

// True when `path` is `sel` or lies below it (both workspace-relative).
[[nodiscard]] bool selected(const std::string& path, const std::vector<std::string>& sel);

struct ApplyOptions {
  std::vector<std::string> paths;  // empty: every change that is not dangerous
  bool force = false;              // apply over real files changed since the start
};
struct ApplyResult {
  std::vector<std::string> applied;
  std::vector<std::string> refused;  // one line each: path and why
  std::vector<std::string> held;     // dangerous, not named
};
[[nodiscard]] base::Result<ApplyResult> apply(const Review& r, const ApplyOptions& opts);

// Removes the session's review directory (upper, work, records).
[[nodiscard]] base::Status discard(const Review& r);

// `agentbox diff`: a unified diff of each selected change (diffutils' `diff -u`), a stat line for
// binary files; with `stat`, one describe() line each. Written to stdout.
[[nodiscard]] base::Status print_diff(const Review& r, const std::vector<std::string>& paths,
                                      bool stat);

// `agentbox diff --patch`: the selected changes as a patch `git apply` takes (git's headers and
// modes, full blob ids, binary files as `GIT binary patch`). Dangerous changes not named, special
// files and names git would quote are left out, one stderr line each; returns how many.
[[nodiscard]] base::Result<size_t> print_patch(const Review& r,
                                               const std::vector<std::string>& paths);

// diffutils' `diff -u` of two files labelled a/REL and b/REL (a missing side is /dev/null),
// written to stdout.
[[nodiscard]] base::Status unified_diff(const std::string& rel, const std::string& old_path,
                                        const std::string& new_path);

}  // namespace agentbox::app
