// `run --review`'s part of a session: the review directory, narrowed grants, the summary.
#include "agentbox/app/session_review.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>

#include "agentbox/app/review_git.hpp"
#include "agentbox/app/session_control.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/base/sys.hpp"

namespace agentbox::app {

using base::Result;
namespace sb = sandbox;

namespace {

// The installed hook: next to the executable (a build tree), or PREFIX/libexec/agentbox.
std::string fsmonitor_helper() {
  std::array<char, PATH_MAX> exe{};
  ssize_t n = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (n <= 0) {
    return {};
  }
  std::string dir(exe.data(), static_cast<size_t>(n));
  dir.erase(dir.rfind('/'));
  for (std::string p :
       {dir + "/agentbox-fsmonitor", dir + "/../libexec/agentbox/agentbox-fsmonitor"}) {
    if (::access(p.c_str(), X_OK) == 0) {
      return p;
    }
  }
  return {};
}

// Gives the box's git an fsmonitor hook that answers from the upper directory (fsmonitor/
// fsmonitor.cpp): the hook, the upper directory and the session's token, read-only in the box.
// Without the helper installed the box's git lstat()s every entry, as before: slower, not wrong.
void add_fsmonitor(SessionReview& r, const std::string& workspace) {
  std::string helper = fsmonitor_helper();
  if (helper.empty()) {
    base::log::debug("--review: no agentbox-fsmonitor next to agentbox; git status lstat()s all");
    return;
  }
  std::string session = r.review.root + "/fsmonitor";
  std::string text = fmt::format("agentbox-review:{}\n{}\n", r.review.id, workspace);
  if (auto w = base::write_file(session, text, 0600); !w) {
    base::log::debug("--review: no fsmonitor hook: {}", w.error().message());
    return;
  }
  r.fsmonitor = kBoxFsmonitor;
  r.overlays = {{.target = kBoxFsmonitor, .source = helper},
                {.target = kBoxFsmonitorSession, .source = session},
                {.target = kBoxReviewUpper, .source = r.review.upper, .dir = true}};
}

}  // namespace

Result<SessionReview> start_review(const std::string& state_dir, const std::string& id,
                                   const std::string& workspace, const std::string& git_common,
                                   const std::vector<std::string>& protect,
                                   std::vector<sb::Grant>& grants, audit::Sink& sink) {
  SessionReview r;
  auto lock = create_review(state_dir, id, workspace, protect, r.review);
  if (!lock) {
    return std::move(lock).error().context("preparing the review directory (--review)");
  }
  r.lock = std::move(*lock);
  // Overlayfs takes an upper directory inside its lower one on some kernels; the box would then
  // see (and write) its own upper layer through the workspace.
  std::array<char, PATH_MAX> real{};
  if (::realpath(r.review.root.c_str(), real.data()) != nullptr &&
      sb::path_within(real.data(), workspace)) {
    r.lock = base::UniqueFd();
    [[maybe_unused]] auto d = discard(r.review);
    return base::Error::msg(fmt::format("--review: the review directory `{}` lies inside the "
                                        "workspace `{}`",
                                        real.data(), workspace))
        .hint("set XDG_STATE_HOME to a directory outside the workspace");
  }
  std::erase_if(grants, [&](const sb::Grant& g) {
    bool inside = g.writable && sb::path_within(g.path, workspace);
    if (inside) {
      base::log::debug("--review: the grant of `{}` is left to the overlay", g.path);
    }
    return inside;
  });
  for (auto& g : grants) {
    if (g.writable && !git_common.empty() && g.path == git_common) {
      g.writable = false;  // commits in a linked worktree would land in its repository live
    }
  }
  add_fsmonitor(r, workspace);
  sink.emit(audit::Event("review.start").str("dir", r.review.root).str("workspace", workspace));
  return r;
}

std::string review_mount_hint(const std::vector<sb::MountOp>& mounts,
                              const sb::LaunchFailure& failure) {
  if (failure.stage != sb::SetupStage::kMountOp || failure.index < 0 ||
      static_cast<size_t>(failure.index) >= mounts.size() ||
      mounts[static_cast<size_t>(failure.index)].kind != sb::MountKind::kOverlay) {
    return {};
  }
  const std::string& upper = mounts[static_cast<size_t>(failure.index)].data;
  std::string why;
  switch (failure.err) {
    case ELOOP:
    case EBUSY:
      why = fmt::format("the review directory `{}` must lie outside the workspace", upper);
      break;
    case EPERM:
      why =
          "this kernel refuses overlayfs in a user namespace (it needs >= 5.11; a security "
          "module or container policy may forbid it)";
      break;
    default:
      why = fmt::format(
          "the review directory `{}` must be on a filesystem that overlayfs takes as its upper "
          "layer with user.* extended attributes (ext4, xfs, btrfs, tmpfs >= 6.6; not NFS or "
          "overlayfs), and the workspace on at most one level of overlayfs already (the kernel "
          "stacks two)",
          upper);
      break;
  }
  return fmt::format(
      "--review shows the workspace only through overlayfs, never writable without it: {}; "
      "point XDG_STATE_HOME elsewhere or run without --review; `agentbox doctor` checks overlayfs",
      why);
}

std::vector<std::string> finish_review(SessionReview& r, bool started, audit::Sink& sink) {
  r.lock = base::UniqueFd();
  if (!started) {
    [[maybe_unused]] auto d = discard(r.review);
    return {};
  }
  auto changes = scan(r.review);
  if (!changes) {
    return {fmt::format("review: {}", changes.error().message())};
  }
  std::vector<std::string> dangerous;
  for (const auto& c : *changes) {
    if (!c.danger.empty()) {
      dangerous.push_back(c.path);
    }
  }
  sink.emit(audit::Event("review.changes")
                .str("dir", r.review.root)
                .num("changes", static_cast<int64_t>(changes->size()))
                .strs("dangerous", dangerous));
  std::vector<std::string> lines = summary_lines(r.review, *changes, 40);
  if (auto g = git_changes(r.review, false); g && !g->refs.empty()) {
    std::string names;
    for (const auto& c : g->refs) {
      names += (names.empty() ? "" : ", ") + shown(c.name);
    }
    lines.push_back(
        fmt::format("review: the box's git moved {} ref(s) ({}): `agentbox apply {}` "
                    "lists their commits, `--refs` lands them",
                    g->refs.size(), names, short_id(r.review.id)));
  }
  return lines;
}

}  // namespace agentbox::app
