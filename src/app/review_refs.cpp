// Review mode's git refs (app/review_git.hpp): the snapshot at the start, the box's refs as the
// upper `.git` lays over it, and `apply --refs` (compare-and-swap through `git update-ref`).
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>

#include "agentbox/app/review_git.hpp"
#include "agentbox/app/session_control.hpp"
#include "agentbox/base/sys.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using base::UniqueFd;

namespace {

constexpr size_t kMaxRefs = 100000;  // a snapshot or an upper tree past this is cut (bounded)
constexpr size_t kShownCommits = 20;

// Loose and packed values by ref name, and HEAD's text: the two stores git reads a ref from
// (a loose file wins over the packed line).
struct RefStore {
  std::map<std::string, std::string> loose;
  std::map<std::string, std::string> packed;
  std::string head;

  [[nodiscard]] std::string value(const std::string& name) const {
    auto l = loose.find(name);
    if (l != loose.end()) {
      return l->second;
    }
    auto p = packed.find(name);
    return p == packed.end() ? std::string() : p->second;
  }
};

bool is_object_id(const std::string& s) {
  return (s.size() == 40 || s.size() == 64) && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// git's ref name rules that matter here: under refs/, no control bytes, spaces or the
// characters git refuses, no `..`, no component starting with `.` or ending with `.lock`.
bool good_ref_name(const std::string& n) {
  if (n.rfind("refs/", 0) != 0 || n.find("..") != std::string::npos ||
      n.find("/.") != std::string::npos || n.find("//") != std::string::npos || n.back() == '/' ||
      n.find(".lock/") != std::string::npos || n.ends_with(".lock")) {
    return false;
  }
  return std::none_of(n.begin(), n.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f || std::string_view("~^:?*[\\").find(c) != std::string::npos;
  });
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

std::string small_file_at(int dir, const char* name) {
  UniqueFd fd(::openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    return {};
  }
  auto s = base::read_all(fd.get(), 4096);
  return s ? trimmed(std::move(*s)) : std::string();
}

void parse_packed(const std::string& text, std::map<std::string, std::string>& out) {
  out.clear();
  for (size_t i = 0; i < text.size() && out.size() < kMaxRefs;) {
    size_t j = text.find('\n', i);
    j = j == std::string::npos ? text.size() : j;
    std::string line = text.substr(i, j - i);
    i = j + 1;
    auto sp = line.find(' ');
    if (line.empty() || line[0] == '#' || line[0] == '^' || sp == std::string::npos) {
      continue;
    }
    out[line.substr(sp + 1)] = line.substr(0, sp);
  }
}

bool whiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

bool opaque(int dir) {
  std::array<char, 8> v{};
  return ::fgetxattr(dir, "user.overlay.opaque", v.data(), v.size()) == 1 && v[0] == 'y';
}

// The loose refs below `dir` (the directory of `prefix`, e.g. "refs/heads/") laid over `out`:
// a file sets, a whiteout deletes, an opaque directory hides what was below it. For the real
// repository (`overlay` false) every file sets and nothing is below.
void walk_loose(int dir, const std::string& prefix, bool overlay,
                std::map<std::string, std::string>& out) {
  if (overlay && opaque(dir)) {
    std::erase_if(out, [&](const auto& kv) { return kv.first.rfind(prefix, 0) == 0; });
  }
  for (const auto& n : entries_of(dir)) {
    struct stat st {};
    if (out.size() >= kMaxRefs || ::fstatat(dir, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;
    }
    const std::string name = prefix + n;
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dir, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) {
        walk_loose(sub.get(), name + "/", overlay, out);
      }
    } else if (S_ISREG(st.st_mode)) {
      out[name] = small_file_at(dir, n.c_str());
    } else if (overlay && whiteout(st)) {
      std::erase_if(out, [&](const auto& kv) {
        return kv.first == name || kv.first.rfind(name + "/", 0) == 0;
      });
    }
  }
}

// `git_dir`'s refs (`overlay`: laid over `store`, as the upper `.git` lays over the lower).
void read_store(const std::string& git_dir, bool overlay, RefStore& store) {
  UniqueFd g(::open(git_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!g) {
    return;
  }
  if (overlay && opaque(g.get())) {
    store = {};  // the box made its .git anew
  }
  struct stat st {};
  if (::fstatat(g.get(), "packed-refs", &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISREG(st.st_mode)) {
      UniqueFd fd(::openat(g.get(), "packed-refs", O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      auto text = fd ? base::read_all(fd.get(), 256u << 20) : Result<std::string>(std::string());
      parse_packed(text ? *text : std::string(), store.packed);
    } else if (whiteout(st)) {
      store.packed.clear();
    }
  }
  if (::fstatat(g.get(), "refs", &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) {
      UniqueFd refs(::openat(g.get(), "refs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (refs) {
        walk_loose(refs.get(), "refs/", overlay, store.loose);
      }
    } else if (whiteout(st)) {
      store.loose.clear();
    }
  }
  if (::fstatat(g.get(), "HEAD", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
    store.head = small_file_at(g.get(), "HEAD");
  }
}

std::string snapshot_text(const RefStore& s) {
  std::string out = fmt::format("H {}\n", s.head);
  for (const auto& [name, id] : s.loose) {
    out += fmt::format("L {} {}\n", id, name);
  }
  for (const auto& [name, id] : s.packed) {
    out += fmt::format("P {} {}\n", id, name);
  }
  return out;
}

RefStore parse_snapshot(const std::string& text) {
  RefStore s;
  for (size_t i = 0; i < text.size();) {
    size_t j = text.find('\n', i);
    j = j == std::string::npos ? text.size() : j;
    std::string line = text.substr(i, j - i);
    i = j + 1;
    if (line.rfind("H ", 0) == 0) {
      s.head = line.substr(2);
      continue;
    }
    auto sp = line.find(' ', 2);
    if (line.size() < 4 || sp == std::string::npos) {
      continue;
    }
    (line[0] == 'L' ? s.loose : s.packed)[line.substr(sp + 1)] = line.substr(2, sp - 2);
  }
  return s;
}

std::string abbrev(const std::string& id) {
  return id.empty() ? "(none)" : id.substr(0, 12);
}

}  // namespace

base::Status snapshot_refs(const std::string& workspace, const std::string& root) {
  struct stat st {};
  const std::string git_dir = workspace + "/.git";
  if (::lstat(git_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return {};  // no repository, or a linked worktree (its repository is read-only in the box)
  }
  RefStore s;
  read_store(git_dir, false, s);
  return base::write_file(root + "/refs", snapshot_text(s), 0600);
}

Result<GitChanges> git_changes(const Review& r, bool with_commits) {
  GitChanges g;
  auto snap = base::read_file(r.root + "/refs", 64u << 20);
  if (!snap) {
    return g;  // no repository at the start
  }
  const RefStore start = parse_snapshot(*snap);
  RefStore box = start;
  read_store(r.upper + "/.git", true, box);
  std::set<std::string> names;
  using Map = std::map<std::string, std::string>;
  for (const Map* m :
       std::array<const Map*, 4>{&start.loose, &start.packed, &box.loose, &box.packed}) {
    for (const auto& kv : *m) {
      names.insert(kv.first);
    }
  }
  for (const auto& n : names) {
    std::string was = start.value(n);
    std::string now = box.value(n);
    if (was == now) {
      continue;
    }
    if (!good_ref_name(n) || (!was.empty() && !is_object_id(was)) ||
        (!now.empty() && !is_object_id(now))) {
      g.notes.push_back(fmt::format("{}: `{}` -> `{}` is not a plain ref update, never applied",
                                    shown(n), shown(was), shown(now)));
      continue;
    }
    g.refs.push_back({.name = n, .old_id = was, .new_id = now});
  }
  if (box.head != start.head) {
    g.notes.push_back(
        fmt::format("HEAD: the box's is `{}` (was `{}`), never applied: switch "
                    "to it yourself once its ref landed",
                    shown(box.head), shown(start.head)));
  }
  if (!with_commits || g.refs.empty()) {
    return g;
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::vector<std::string> bad, quarantine_objects(r));
  for (auto& b : bad) {
    g.notes.push_back(std::move(b));
  }
  const std::string git_dir = r.workspace + "/.git";
  const std::string objects = r.root + "/objects";
  for (auto& c : g.refs) {
    if (c.new_id.empty()) {
      continue;
    }
    auto whole =
        run_git(git_dir, objects, {"rev-list", "--objects", "--quiet", c.new_id, "--not", "--all"});
    if (!whole) {
      c.problem = fmt::format("its objects are missing or bad ({})", whole.error().message());
      continue;
    }
    auto log = run_git(git_dir, objects,
                       {"log", "--no-color", "--no-decorate", "--max-count=1000", "--format=%h %s",
                        c.new_id, "--not", "--all"});
    for (size_t i = 0; log && i < log->size();) {
      size_t j = log->find('\n', i);
      j = j == std::string::npos ? log->size() : j;
      c.commits.push_back(shown(log->substr(i, j - i)));
      i = j + 1;
    }
    g.commits += c.commits.size();
  }
  return g;
}

std::vector<std::string> describe_refs(const GitChanges& g) {
  std::vector<std::string> out;
  for (const auto& c : g.refs) {
    std::string what = c.new_id.empty() ? "deleted" : c.old_id.empty() ? "new" : "moved";
    out.push_back(fmt::format("ref      {}  {}..{}  ({}, {} commit{}){}", shown(c.name),
                              abbrev(c.old_id), abbrev(c.new_id), what, c.commits.size(),
                              c.commits.size() == 1 ? "" : "s",
                              c.problem.empty() ? "" : "  NOT APPLICABLE: " + c.problem));
    for (size_t i = 0; i < c.commits.size() && i < kShownCommits; ++i) {
      out.push_back("  " + c.commits[i]);
    }
    if (c.commits.size() > kShownCommits) {
      out.push_back(fmt::format("  ... and {} more", c.commits.size() - kShownCommits));
    }
  }
  for (const auto& n : g.notes) {
    out.push_back("git      " + n);
  }
  return out;
}

namespace {

// The index follows a move of the branch the real HEAD names, when nothing is staged in it (it
// equals the old commit's tree): otherwise `git status` shows the landed commits as staged
// reversals. `read-tree --reset` keeps the stat data of unchanged entries; the worktree is
// untouched.
void follow_index(const Review& r, const RefChange& c, const std::string& before,
                  ApplyResult& res) {
  RefStore now;
  const std::string git_dir = r.workspace + "/.git";
  read_store(git_dir, false, now);
  if (now.head != "ref: " + c.name || before.empty() || c.new_id.empty()) {
    return;
  }
  if (!run_git(git_dir, "", {"diff-index", "--cached", "--quiet", before, "--"})) {
    res.refused.push_back(fmt::format(
        "index: something is staged, so it stays at {} while {} moved; `git reset` re-reads it",
        abbrev(before), shown(c.name)));
    return;
  }
  if (auto s = run_git(git_dir, "", {"read-tree", "--reset", c.new_id}); !s) {
    res.refused.push_back(fmt::format("index: not moved to {} ({}); `git reset` re-reads it",
                                      abbrev(c.new_id), s.error().message()));
  }
}

}  // namespace

void apply_refs(const Review& r, const GitChanges& g, bool force, ApplyResult& res) {
  bool any = std::any_of(g.refs.begin(), g.refs.end(),
                         [](const RefChange& c) { return c.problem.empty(); });
  if (any) {
    if (auto s = land_objects(r); !s) {
      res.refused.push_back(fmt::format("git objects: {}", s.error().message()));
      return;
    }
  }
  const std::string git_dir = r.workspace + "/.git";
  const std::string zero(
      g.refs.empty() ? 40 : std::max(g.refs[0].old_id.size(), g.refs[0].new_id.size()), '0');
  for (const auto& c : g.refs) {
    if (!c.problem.empty()) {
      res.refused.push_back(fmt::format("ref {}: {}", shown(c.name), c.problem));
      continue;
    }
    RefStore now;
    read_store(git_dir, false, now);
    const std::string real = now.value(c.name);
    if (real == c.new_id) {
      res.applied.push_back(fmt::format("ref {} (already at {})", shown(c.name), abbrev(real)));
      continue;
    }
    if (real != c.old_id && !force) {
      res.refused.push_back(fmt::format(
          "ref {}: moved in the real repository since the session started ({} -> {}; --force "
          "applies it anyway)",
          shown(c.name), abbrev(c.old_id), abbrev(real)));
      continue;
    }
    std::vector<std::string> args = {"update-ref", "-m",
                                     fmt::format("agentbox apply (review {})", short_id(r.id))};
    if (c.new_id.empty()) {
      args.insert(args.end(), {"-d", c.name});
    } else {
      args.insert(args.end(), {c.name, c.new_id});
    }
    if (!force) {  // compare-and-swap: git checks the value under its ref lock
      args.push_back(c.old_id.empty() ? zero : c.old_id);
    }
    if (auto s = run_git(git_dir, "", args); !s) {
      res.refused.push_back(fmt::format("ref {}: {}", shown(c.name), s.error().message()));
      continue;
    }
    res.applied.push_back(
        fmt::format("ref {} {}..{}", shown(c.name), abbrev(c.old_id), abbrev(c.new_id)));
    follow_index(r, c, real, res);
  }
}

}  // namespace agentbox::app
