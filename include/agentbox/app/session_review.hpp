// `run --review`'s part of a session (app/review.hpp): the review directory before the box
// starts, the grants review mode narrows, the hint when overlayfs is refused, the summary at the
// end.
#pragma once

#include <string>
#include <vector>

#include "agentbox/app/review.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/sandbox/launcher.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

struct SessionReview {
  Review review;
  base::UniqueFd lock;  // held while the box runs: apply and discard wait for its end
  // The box's git fsmonitor hook (docs/REVIEW.md, "git status"): its box path ("" when the
  // helper is not installed) and what it reads, shown read-only in the box.
  std::string fsmonitor;
  std::vector<sandbox::Overlay> overlays;
};

// The box paths of the fsmonitor hook (fsmonitor/fsmonitor.cpp reads the same ones).
inline constexpr const char* kBoxFsmonitor = "/etc/agentbox/review/fsmonitor";
inline constexpr const char* kBoxFsmonitorSession = "/etc/agentbox/review/session";
inline constexpr const char* kBoxReviewUpper = "/etc/agentbox/review/upper";

// Makes the review directory and narrows `grants`: a writable grant inside the workspace is
// dropped (the overlay shows it writable, its writes reviewed like the rest) and the linked
// worktree's repository (`git_common`) becomes read-only, since writes there would land live.
[[nodiscard]] base::Result<SessionReview> start_review(
    const std::string& state_dir, const std::string& id, const std::string& workspace,
    const std::string& git_common, const std::vector<std::string>& protect,
    std::vector<sandbox::Grant>& grants, audit::Sink& sink);

// The hint for a box whose overlay mount failed; "" when the failure is about another op.
[[nodiscard]] std::string review_mount_hint(const std::vector<sandbox::MountOp>& mounts,
                                            const sandbox::LaunchFailure& failure);

// The session's end: the summary lines (and the review.changes audit event) when the box ran;
// the review directory removed when it never started.
[[nodiscard]] std::vector<std::string> finish_review(SessionReview& r, bool started,
                                                     audit::Sink& sink);

}  // namespace agentbox::app
