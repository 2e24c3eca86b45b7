// `agentbox diff|apply|discard SESSION`: what a review session (`run --review`) changed, landed
// or thrown away (app/review.hpp, docs/REVIEW.md).
#include "agentbox/app/review.hpp"

#include <fmt/core.h>
#include <time.h>

#include <memory>
#include <string>
#include <vector>

#include "agentbox/app/review_git.hpp"
#include "agentbox/app/session_control.hpp"
#include "agentbox/base/error.hpp"
#include "agentbox/config/units.hpp"
#include "verbs.hpp"

namespace agentbox::cli {
namespace {

struct ReviewArgs {
  std::string session;
  std::vector<std::string> paths;
  bool stat = false;
  bool patch = false;
  bool force = false;
  bool refs = false;
  std::string older_than;
};

int fail(const base::Error& e) {
  fmt::print(stderr, "{}", e.render());
  return 125;
}

// Paths as the user types them: relative to the workspace, `./` and trailing `/` dropped.
std::vector<std::string> clean(std::vector<std::string> paths) {
  for (auto& p : paths) {
    while (p.rfind("./", 0) == 0) {
      p.erase(0, 2);
    }
    while (p.size() > 1 && p.back() == '/') {
      p.pop_back();
    }
  }
  return paths;
}

// Seconds since review `r` started, by the clock its `started` file was stamped with.
uint64_t age_of(const app::Review& r) {
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return now.tv_sec > r.started.tv_sec ? uint64_t(now.tv_sec - r.started.tv_sec) : 0;
}

// `discard --older-than AGE`: retention is this explicit verb, never automatic, so work the
// user has not looked at does not vanish on its own (docs/REVIEW.md). A running session is kept.
int discard_older(const std::string& dir, const std::string& older_than) {
  auto age = config::parse_duration(older_than);
  if (!age) {
    return fail(base::Error::msg(fmt::format("--older-than: invalid duration `{}`", older_than))
                    .hint("expected e.g. 12h, 7d, 30d"));
  }
  auto all = app::list_reviews(dir);
  if (!all) {
    return fail(all.error());
  }
  for (const auto& r : *all) {
    uint64_t a = age_of(r);
    if (a < *age) {
      continue;
    }
    if (auto s = app::discard(r); s) {
      fmt::print("discarded review session {} ({} old)\n", app::short_id(r.id),
                 config::format_duration(a));
    } else {
      fmt::print("kept review session {}: {}\n", app::short_id(r.id), s.error().message());
    }
  }
  return 0;
}

int list(const std::string& dir) {
  auto all = app::list_reviews(dir);
  if (!all) {
    return fail(all.error());
  }
  if (all->empty()) {
    fmt::print("no review sessions kept under {}\n", app::review_root(dir));
    return 0;
  }
  for (const auto& r : *all) {
    auto changes = app::scan(r);
    fmt::print("{}  {} changes  {} old  {}\n", app::short_id(r.id), changes ? changes->size() : 0,
               config::format_duration(age_of(r)), r.workspace);
  }
  return 0;
}

// The box's git objects and refs are held as files (git metadata) one line each would drown the
// rest: they are counted, and --refs is the way they land (verified, as objects and refs).
bool git_store(const std::string& held) {
  for (const char* p : {".git/objects/", ".git/refs/", ".git/logs/"}) {
    if (held.rfind(p, 0) == 0) {
      return true;
    }
  }
  return false;
}

int apply(const app::Review& r, const ReviewArgs& a) {
  auto res = app::apply(r, {.paths = clean(a.paths), .force = a.force});
  if (!res) {
    return fail(res.error());
  }
  auto g = app::git_changes(r, true);
  if (!g) {
    return fail(g.error());
  }
  for (const auto& line : app::describe_refs(*g)) {
    fmt::print("{}\n", line);
  }
  if (a.refs) {
    app::apply_refs(r, *g, a.force, *res);
  }
  for (const auto& p : res->applied) {
    fmt::print("applied  {}\n", p);
  }
  size_t git_files = 0;
  for (const auto& h : res->held) {
    if (git_store(h)) {
      ++git_files;
      continue;
    }
    fmt::print("held     {} (name it to apply it)\n", h);
  }
  if (git_files > 0) {
    fmt::print(
        "held     {} file(s) under .git/objects, .git/refs, .git/logs: the box's git "
        "({})\n",
        git_files,
        a.refs ? "its refs and verified objects landed through --refs"
               : "apply --refs lands its commits as objects and refs");
  }
  if (!a.refs && !g->refs.empty()) {
    fmt::print(
        "left out {} commit(s) on {} ref(s) (listed above): agentbox apply --refs {} "
        "lands them as objects and refs, never git config or hooks\n",
        g->commits, g->refs.size(), app::short_id(r.id));
  }
  for (const auto& f : res->refused) {
    fmt::print(stderr, "agentbox: error: apply: {}\n", f);
  }
  return res->refused.empty() ? 0 : 1;
}

int verb(const std::string& name, const ReviewArgs& a) {
  const std::string dir = user_state_dir();
  if (!a.older_than.empty()) {
    if (!a.session.empty()) {
      return fail(base::Error::msg("discard: give a session or --older-than, not both"));
    }
    return discard_older(dir, a.older_than);
  }
  if (a.session.empty()) {
    return list(dir);
  }
  auto r = app::open_review(dir, a.session);
  if (!r) {
    return fail(std::move(r).error());
  }
  if (name == "diff" && a.patch) {
    auto left_out = app::print_patch(*r, clean(a.paths));
    if (!left_out) {
      return fail(left_out.error());
    }
    if (*left_out > 0) {
      fmt::print(stderr, "agentbox: error: diff --patch: {} change(s) left out (listed above)\n",
                 *left_out);
      return 1;
    }
    return 0;
  }
  if (name == "diff") {
    auto s = app::print_diff(*r, clean(a.paths), a.stat);
    if (s && a.stat && a.paths.empty()) {
      auto g = app::git_changes(*r, true);
      for (const auto& line : g ? app::describe_refs(*g) : std::vector<std::string>()) {
        fmt::print("{}\n", line);
      }
    }
    return s ? 0 : fail(s.error());
  }
  if (name == "discard") {
    auto s = app::discard(*r);
    if (!s) {
      return fail(s.error());
    }
    fmt::print("discarded review session {}\n", app::short_id(r->id));
    return 0;
  }
  return apply(*r, a);
}

void add(CLI::App& app, int& exit_code, const std::string& name, const std::string& help) {
  auto args = std::make_shared<ReviewArgs>();
  CLI::App* sub = app.add_subcommand(name, help);
  sub->add_option("session", args->session,
                  "The review session (its id or short id); none: list the sessions kept");
  if (name != "discard") {
    sub->add_option("paths", args->paths, "Only these workspace-relative paths");
  }
  if (name == "diff") {
    auto* stat = sub->add_flag("--stat", args->stat, "One line per change instead of the diff");
    sub->add_flag("--patch", args->patch,
                  "A patch git apply takes (binary files included; dangerous changes only when "
                  "named)")
        ->excludes(stat);
  }
  if (name == "discard") {
    sub->add_option("--older-than", args->older_than,
                    "Discard every review session older than this (e.g. 30d); running ones stay");
  }
  if (name == "apply") {
    sub->add_flag("--force", args->force,
                  "Apply over real files (and refs) that changed since the session started");
    sub->add_flag("--refs", args->refs,
                  "Also land the box's git commits: verified objects and the refs it moved "
                  "(compare-and-swap), never git config or hooks");
  }
  sub->callback([&exit_code, args, name] { exit_code = verb(name, *args); });
}

}  // namespace

void register_review(CLI::App& app, int& exit_code) {
  add(app, exit_code, "diff", "Show what a review session (run --review) changed");
  add(app, exit_code, "apply",
      "Land a review session's changes in the workspace (dangerous ones only when named)");
  add(app, exit_code, "discard", "Throw a review session's changes away");
}

}  // namespace agentbox::cli
