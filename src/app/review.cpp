// Review mode: the session's review directory and the scan of its overlay upper directory.
#include "agentbox/app/review.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <set>

#include "agentbox/app/review_git.hpp"
#include "agentbox/app/session_control.hpp"
#include "agentbox/app/session_dirs.hpp"
#include "agentbox/base/sys.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using base::UniqueFd;

std::string review_root(const std::string& state_dir) {
  return state_dir + "/review";
}

namespace {

constexpr int kOpenDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

Result<Review> read_review(const std::string& root, const std::string& id) {
  Review r{.id = id, .root = root, .upper = root + "/upper", .work = root + "/work"};
  auto ws = base::read_file(root + "/workspace", 1u << 16);
  if (!ws) {
    return std::move(ws).error().context(fmt::format("review session `{}`", id));
  }
  r.workspace = std::move(*ws);
  struct stat st {};
  if (::lstat((root + "/started").c_str(), &st) != 0) {
    return Error::sys(errno, "stat", root + "/started");
  }
  r.started = st.st_ctim;
  if (auto p = base::read_file(root + "/protected", 1u << 20)) {
    for (size_t i = 0; i < p->size();) {
      size_t j = p->find('\n', i);
      j = j == std::string::npos ? p->size() : j;
      if (j > i) {
        r.protected_paths.push_back(p->substr(i, j - i));
      }
      i = j + 1;
    }
  }
  return r;
}

}  // namespace

Result<UniqueFd> create_review(const std::string& state_dir, const std::string& id,
                               const std::string& workspace,
                               const std::vector<std::string>& protect, Review& out) {
  const std::string root = review_root(state_dir) + "/" + id;
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd lock, make_session_dir(root));
  for (const char* d : {"upper", "work"}) {
    if (::mkdir((root + "/" + d).c_str(), 0700) != 0) {
      return Error::sys(errno, "mkdir", root + "/" + d);
    }
  }
  std::string rels;
  for (const auto& p : protect) {
    if (p.find('\n') == std::string::npos) {
      rels += p + "\n";
    }
  }
  AGENTBOX_TRY(base::write_file(root + "/workspace", workspace, 0600));
  AGENTBOX_TRY(base::write_file(root + "/protected", rels, 0600));
  AGENTBOX_TRY(snapshot_refs(workspace, root));  // the compare-and-swap values of apply --refs
  AGENTBOX_TRY(base::write_file(root + "/started", "", 0600));  // last: its ctime is the start
  AGENTBOX_ASSIGN_OR_RETURN(out, read_review(root, id));
  return lock;
}

Result<std::vector<Review>> list_reviews(const std::string& state_dir) {
  std::vector<Review> out;
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(review_root(state_dir), ec)) {
    std::string name = e.path().filename().string();
    if (session_start(name) >= 0) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    if (auto r = read_review(review_root(state_dir) + "/" + n, n)) {
      out.push_back(std::move(*r));
    }
  }
  return out;
}

Result<Review> open_review(const std::string& state_dir, const std::string& id) {
  AGENTBOX_ASSIGN_OR_RETURN(auto all, list_reviews(state_dir));
  std::vector<Review*> hits;
  for (auto& r : all) {
    if (!id.empty() && (r.id.rfind(id, 0) == 0 || short_id(r.id) == id)) {
      hits.push_back(&r);
    }
  }
  if (hits.size() == 1) {
    return std::move(*hits[0]);
  }
  return Error::msg(fmt::format("{} review session `{}` under {}",
                                hits.empty() ? "no" : "more than one", id, review_root(state_dir)))
      .hint("`agentbox diff` without a session lists the review sessions kept");
}

Result<UniqueFd> lock_review(const Review& r) {
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd fd,
                            base::open_fd(r.root + "/lock", O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Error::msg(fmt::format("review session `{}` is still running", r.id))
          .hint("wait until its box has ended");
    }
    return Error::sys(errno, "flock", r.root + "/lock");
  }
  return fd;
}

std::vector<std::string> entries_of(int dir) {
  std::vector<std::string> out;
  int dup = ::fcntl(dir, F_DUPFD_CLOEXEC, 0);
  DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
  if (d == nullptr) {
    if (dup >= 0) {
      ::close(dup);
    }
    return out;
  }
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") {
      out.push_back(std::move(n));
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool selected(const std::string& path, const std::vector<std::string>& sel) {
  return std::any_of(sel.begin(), sel.end(), [&](const std::string& s) {
    return path == s ||
           (path.size() > s.size() && path.compare(0, s.size(), s) == 0 && path[s.size()] == '/');
  });
}

namespace {

// Two files, same bytes? (sizes already equal.)
bool same_bytes(int a_dir, const char* a, int b_dir, const char* b) {
  UniqueFd fa(::openat(a_dir, a, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  UniqueFd fb(::openat(b_dir, b, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fa || !fb) {
    return false;
  }
  std::array<char, 65536> x{};
  std::array<char, 65536> y{};
  for (;;) {
    ssize_t n = base::retry_eintr([&] { return ::read(fa.get(), x.data(), x.size()); });
    ssize_t m = n > 0 ? base::retry_eintr([&] { return ::read(fb.get(), y.data(), size_t(n)); })
                      : base::retry_eintr([&] { return ::read(fb.get(), y.data(), 1); });
    if (n < 0 || m != n) {
      return false;
    }
    if (n == 0) {
      return true;
    }
    if (std::memcmp(x.data(), y.data(), size_t(n)) != 0) {
      return false;
    }
  }
}

EntryType type_of(mode_t m) {
  if (S_ISREG(m)) {
    return EntryType::kFile;
  }
  if (S_ISDIR(m)) {
    return EntryType::kDir;
  }
  return S_ISLNK(m) ? EntryType::kSymlink : EntryType::kOther;
}

std::string link_text(int dir, const char* name) {
  std::array<char, 4096> buf{};
  ssize_t n = ::readlinkat(dir, name, buf.data(), buf.size());
  return n > 0 ? std::string(buf.data(), size_t(n)) : std::string();
}

// One directory level of the upper tree against the same level of the real workspace (lower
// may be -1: nothing there).
class Scanner {
 public:
  explicit Scanner(std::vector<Change>& out) : out_(out) {}

  void walk(int upper, int lower, const std::string& prefix, bool opaque) {
    std::set<std::string> seen;
    for (const auto& name : entries_of(upper)) {
      seen.insert(name);
      entry(upper, lower, prefix + name, name.c_str());
    }
    if (opaque && lower >= 0) {  // what the box's new directory hides is gone
      for (const auto& name : entries_of(lower)) {
        struct stat lst {};
        if (!seen.contains(name) &&
            ::fstatat(lower, name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) == 0) {
          deleted(prefix + name, lst);
        }
      }
    }
  }

 private:
  void deleted(const std::string& rel, const struct stat& lst) {
    out_.push_back({.path = rel,
                    .kind = ChangeKind::kDeleted,
                    .type = type_of(lst.st_mode),
                    .old_size = uint64_t(lst.st_size),
                    .old_mode = mode_t(lst.st_mode & 07777)});
  }

  void entry(int upper, int lower, const std::string& rel, const char* name) {
    struct stat ust {};
    struct stat lst {};
    if (::fstatat(upper, name, &ust, AT_SYMLINK_NOFOLLOW) != 0) {
      return;
    }
    bool has_lower = lower >= 0 && ::fstatat(lower, name, &lst, AT_SYMLINK_NOFOLLOW) == 0;
    if (S_ISCHR(ust.st_mode) && ust.st_rdev == 0) {  // a whiteout: the box deleted it
      if (has_lower) {
        deleted(rel, lst);
      }
      return;
    }
    Change c{.path = rel,
             .kind = has_lower ? ChangeKind::kModified : ChangeKind::kAdded,
             .type = type_of(ust.st_mode),
             .size = uint64_t(ust.st_size),
             .old_size = has_lower ? uint64_t(lst.st_size) : 0,
             .mode = mode_t(ust.st_mode & 07777),
             .old_mode = has_lower ? mode_t(lst.st_mode & 07777) : 0,
             .nlink = ust.st_nlink,
             .uid = ust.st_uid};
    if (has_lower && (ust.st_mode & S_IFMT) != (lst.st_mode & S_IFMT)) {
      deleted(rel, lst);  // a file became a directory, or the reverse
      has_lower = false;
      c.kind = ChangeKind::kAdded;
      c.old_size = 0;
    }
    if (S_ISDIR(ust.st_mode)) {
      dir(c, upper, has_lower ? lower : -1, name);
      return;
    }
    if (S_ISLNK(ust.st_mode)) {
      c.link = link_text(upper, name);
      if (has_lower && c.link == link_text(lower, name)) {
        return;
      }
    } else if (has_lower && S_ISREG(ust.st_mode) && ust.st_size == lst.st_size &&
               same_bytes(upper, name, lower, name)) {
      if (c.mode == c.old_mode) {
        return;  // copied up (opened for writing, touched) but the same
      }
      c.kind = ChangeKind::kMode;
    }
    out_.push_back(std::move(c));
  }

  void dir(Change& c, int upper, int lower, const char* name) {
    UniqueFd u(::openat(upper, name, kOpenDirFlags));
    UniqueFd l(lower >= 0 ? ::openat(lower, name, kOpenDirFlags) : -1);
    std::array<char, 8> v{};
    ssize_t n = u ? ::fgetxattr(u.get(), "user.overlay.opaque", v.data(), v.size()) : -1;
    c.opaque = n == 1 && v[0] == 'y';
    if (c.kind == ChangeKind::kAdded || c.mode != c.old_mode || (c.opaque && l)) {
      if (c.kind == ChangeKind::kModified && c.mode != c.old_mode) {
        c.kind = ChangeKind::kMode;
      }
      out_.push_back(c);
    }
    if (u) {
      walk(u.get(), l ? l.get() : -1, c.path + "/", c.opaque);
    }
  }

  std::vector<Change>& out_;
};

// An added file with the bytes of a deleted one (same size first) was most likely renamed.
void find_renames(const Review& r, std::vector<Change>& changes) {
  UniqueFd up(::open(r.upper.c_str(), kOpenDirFlags));
  UniqueFd low(::open(r.workspace.c_str(), kOpenDirFlags));
  size_t budget = 4096;  // content comparisons, so a pathological session stays quick
  for (auto& a : changes) {
    if (a.kind != ChangeKind::kAdded || a.type != EntryType::kFile || a.size == 0) {
      continue;
    }
    for (const auto& d : changes) {
      if (d.kind == ChangeKind::kDeleted && d.type == EntryType::kFile && d.old_size == a.size &&
          budget > 0) {
        --budget;
        if (same_bytes(up.get(), a.path.c_str(), low.get(), d.path.c_str())) {
          a.renamed_from = d.path;
          break;
        }
      }
    }
  }
}

std::string human(uint64_t n) {
  if (n >= (1u << 20)) {
    return fmt::format("{:.1f} MiB", double(n) / (1u << 20));
  }
  return n >= 1024 ? fmt::format("{:.1f} KiB", double(n) / 1024) : fmt::format("{} B", n);
}

bool in_any(const std::string& rel, std::initializer_list<const char*> list) {
  for (const char* p : list) {
    std::string s = p;
    if (!s.empty() && s.back() == '/' ? rel.rfind(s, 0) == 0 || rel + "/" == s : rel == s) {
      return true;
    }
  }
  return false;
}

bool link_escapes(const Change& c, const std::string& workspace) {
  if (c.link.empty()) {
    return false;
  }
  std::string dir = workspace;
  if (auto slash = c.path.rfind('/'); slash != std::string::npos) {
    dir += "/" + c.path.substr(0, slash);
  }
  std::string to = sandbox::lexically_normal_abs(c.link[0] == '/' ? c.link : dir + "/" + c.link);
  return !sandbox::path_within(to, workspace);
}

}  // namespace

Result<std::vector<Change>> scan(const Review& r) {
  auto up = base::open_fd(r.upper, kOpenDirFlags);
  if (!up) {
    return std::move(up).error().context(fmt::format("review session `{}`", r.id));
  }
  UniqueFd low(::open(r.workspace.c_str(), kOpenDirFlags));
  std::vector<Change> out;
  Scanner(out).walk(up->get(), low ? low.get() : -1, "", false);
  find_renames(r, out);
  for (auto& c : out) {
    c.danger = danger_of(c, r.protected_paths);
    if (c.danger.empty() && c.type == EntryType::kSymlink && link_escapes(c, r.workspace)) {
      c.danger = fmt::format("symlink out of the workspace (-> {})", shown(c.link));
    }
  }
  return out;
}

std::string danger_of(const Change& c, const std::vector<std::string>& protect) {
  const std::string& p = c.path;
  const std::string base = p.substr(p.rfind('/') == std::string::npos ? 0 : p.rfind('/') + 1);
  if (p == ".git" || p.rfind(".git/", 0) == 0 || p.find("/.git/") != std::string::npos ||
      base == ".git") {
    return "git metadata";
  }
  if (base == ".gitattributes" || base == ".gitmodules") {
    return fmt::format("{} (git runs filters and fetches submodules from it)", base);
  }
  if (selected(p, protect)) {
    return "a protected path (it runs code outside the box)";
  }
  if (in_any(p, {".github/workflows/", ".github/actions/", ".gitlab-ci.yml", ".gitlab/",
                 ".circleci/", ".travis.yml", "Jenkinsfile", "azure-pipelines.yml", ".buildkite/",
                 "bitbucket-pipelines.yml", ".drone.yml", ".woodpecker/", ".woodpecker.yml",
                 ".forgejo/workflows/", ".gitea/workflows/"})) {
    return "CI configuration";
  }
  bool exec_now = c.type == EntryType::kFile && (c.mode & 0111) != 0;
  if (exec_now && (c.kind == ChangeKind::kAdded || (c.old_mode & 0111) == 0)) {
    return "a new executable";
  }
  if (c.kind != ChangeKind::kDeleted && (c.mode & 06000) != 0) {
    return "a set-id bit (apply drops it)";
  }
  return {};
}

std::string shown(std::string_view s) {
  std::string out;
  for (char ch : s) {
    auto u = static_cast<unsigned char>(ch);
    out += u < 0x20 || u == 0x7f ? fmt::format("\\x{:02x}", u) : std::string(1, ch);
  }
  return out;
}

std::string describe(const Change& c) {
  std::string what;
  std::string detail;
  switch (c.kind) {
    case ChangeKind::kAdded:
      what = c.renamed_from.empty() ? "added" : "renamed";
      detail = c.renamed_from.empty()
                   ? human(c.size)
                   : fmt::format("from {}, {}", shown(c.renamed_from), human(c.size));
      break;
    case ChangeKind::kModified:
      what = "modified";
      detail = fmt::format("{} -> {}", human(c.old_size), human(c.size));
      break;
    case ChangeKind::kDeleted:
      what = "deleted";
      detail = fmt::format("was {}", human(c.old_size));
      break;
    case ChangeKind::kMode:
      what = "mode";
      detail = fmt::format("{:o} -> {:o}", c.old_mode, c.mode);
      break;
  }
  switch (c.type) {
    case EntryType::kFile:
      if (c.kind == ChangeKind::kModified && c.mode != c.old_mode) {
        detail += fmt::format(", mode {:o} -> {:o}", c.old_mode, c.mode);
      }
      break;
    case EntryType::kDir:
      detail = c.kind == ChangeKind::kMode ? detail : "directory";
      detail += c.opaque ? ", made anew: what it held is deleted" : "";
      break;
    case EntryType::kSymlink:
      detail =
          c.kind == ChangeKind::kDeleted ? "symlink" : fmt::format("symlink -> {}", shown(c.link));
      break;
    case EntryType::kOther:
      detail = "special file, never applied";
      break;
  }
  return fmt::format("{:<9}{}  ({}){}", what, shown(c.path), detail,
                     c.danger.empty() ? "" : fmt::format("  DANGEROUS: {}", c.danger));
}

std::vector<std::string> summary_lines(const Review& r, const std::vector<Change>& changes,
                                       size_t max_lines) {
  std::array<size_t, 4> n{};
  size_t dangerous = 0;
  for (const auto& c : changes) {
    ++n[size_t(c.kind)];
    dangerous += c.danger.empty() ? 0 : 1;
  }
  std::vector<std::string> out;
  if (changes.empty()) {
    out.push_back(fmt::format("review: the box changed nothing in {}", r.workspace));
    return out;
  }
  out.push_back(fmt::format(
      "review: {} change{} to {} ({} added, {} modified, {} deleted, {} mode), {} dangerous; "
      "nothing landed yet: agentbox diff|apply|discard {}",
      changes.size(), changes.size() == 1 ? "" : "s", r.workspace, n[0], n[1], n[2], n[3],
      dangerous, short_id(r.id)));
  std::vector<const Change*> order;
  order.reserve(changes.size());
  for (const auto& c : changes) {
    order.push_back(&c);
  }
  std::stable_partition(order.begin(), order.end(),
                        [](const Change* c) { return !c->danger.empty(); });
  for (size_t i = 0; i < order.size() && i < max_lines; ++i) {
    out.push_back("  " + describe(*order[i]));
  }
  if (order.size() > max_lines) {
    out.push_back(fmt::format("  ... and {} more (agentbox diff --stat {})",
                              order.size() - max_lines, short_id(r.id)));
  }
  return out;
}

}  // namespace agentbox::app
