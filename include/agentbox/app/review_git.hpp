// Review mode's git (docs/REVIEW.md, "Commits"): the box's git works on the overlay, so its
// commits are objects and refs in the upper `.git`. `apply --refs` lands them as objects and refs
// only, never anything else under `.git` (config, hooks, index, info/, alternates run code or
// redirect git).
//
// Theory of operation:
//   1. run --review: snapshot_refs() records the real repository's refs (loose and packed, and
//      HEAD) in the review directory: the compare-and-swap values of step 4.
//   2. git_changes(): the box's refs are the snapshot with the upper `.git` laid over it (loose
//      ref files, whiteouts, a rewritten packed-refs, opaque directories); every ref whose value
//      differs is a RefChange. The upper's objects are verified into a quarantine of the review
//      directory (loose: inflated and hashed here, the id must be the name; packs: the host's
//      `git index-pack`, which hashes every object itself), never copied unread.
//   3. The host's git lists each change's commits (`git log` over the quarantine with the real
//      objects as alternates) and checks they are complete (`rev-list --objects`). Every git run
//      is config- and hook-safe: `core.hooksPath=/dev/null`, no fsmonitor, no GIT_* from the
//      caller, the real repository's own config only (never the upper's).
//   4. apply_refs(): the quarantine's objects move into the real repository (never replacing one),
//      then each ref is `git update-ref NEW OLD` with OLD the snapshot's value: a ref that moved
//      on the host since the start is refused unless forced. When the branch the real HEAD names
//      moved, the index follows (`git read-tree -m OLD NEW`, the worktree untouched).
#pragma once

#include <string>
#include <vector>

#include "agentbox/app/review.hpp"
#include "agentbox/base/result.hpp"

namespace agentbox::app {

struct RefChange {
  std::string name;                  // refs/heads/main
  std::string old_id;                // at the session's start ("" : the ref is new)
  std::string new_id;                // in the box ("" : the box deleted it)
  std::vector<std::string> commits;  // "abbrev subject", newest first, control bytes shown
  std::string problem;               // why it cannot land (objects missing or bad); "" when fine
};

struct GitChanges {
  std::vector<RefChange> refs;
  std::vector<std::string> notes;  // what is never applied (HEAD switched, symbolic refs, ...)
  size_t commits = 0;              // over all refs
};

// Step 1, at the session's start: records the refs of `workspace`/.git (a plain repository; a
// linked worktree or no repository records nothing).
[[nodiscard]] base::Status snapshot_refs(const std::string& workspace, const std::string& root);

// Step 2 and 3. An empty result when the session has no snapshot or the box moved no ref.
// `with_commits` false: the ref changes only (no objects read, no git run).
[[nodiscard]] base::Result<GitChanges> git_changes(const Review& r, bool with_commits);

// The lines that show `g`: "ref refs/heads/x  OLD..NEW  (N commits)" then "  abbrev subject".
[[nodiscard]] std::vector<std::string> describe_refs(const GitChanges& g);

// Step 4: lands the objects, then each ref (compare-and-swap against the start unless `force`);
// one line per ref in `res.applied` or `res.refused`.
void apply_refs(const Review& r, const GitChanges& g, bool force, ApplyResult& res);

// The host's git run safely (step 3) on the real repository `git_dir`; `objects` (when not
// empty) is the object directory, with the real objects as its alternate. Returns stdout; an
// error carries git's stderr.
[[nodiscard]] base::Result<std::string> run_git(const std::string& git_dir,
                                                const std::string& objects,
                                                const std::vector<std::string>& args);

// Step 2's objects: verifies the upper's objects into `root`/objects. Returns a line per object
// or pack that failed (never moved on).
[[nodiscard]] base::Result<std::vector<std::string>> quarantine_objects(const Review& r);
// Step 4's objects: the quarantine into the real repository's objects (no replacing).
[[nodiscard]] base::Status land_objects(const Review& r);

}  // namespace agentbox::app
