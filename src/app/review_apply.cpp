// Review mode: `agentbox apply` (per file: the upper file moved in, or temp + rename) and `agentbox
// discard`.
#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "agentbox/app/review.hpp"
#include "agentbox/base/sys.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using base::UniqueFd;

namespace {

// `rel` beneath `root`, never through a symlink nor out of it (a link the box or anyone else
// planted in the real workspace must not turn an apply into a write elsewhere).
UniqueFd open_beneath(int root, const std::string& rel, uint64_t flags) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, root, rel.c_str(), &how, sizeof how)));
}

std::string dir_of(const std::string& rel) {
  auto slash = rel.rfind('/');
  return slash == std::string::npos ? "." : rel.substr(0, slash);
}

std::string name_of(const std::string& rel) {
  auto slash = rel.rfind('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

// The parent directory of `rel` in the real workspace, made (0755) where missing.
Result<UniqueFd> parent_dir(int ws, const std::string& rel) {
  std::string dir = dir_of(rel);
  UniqueFd fd = open_beneath(ws, dir, O_RDONLY | O_DIRECTORY);
  if (fd || errno != ENOENT) {
    return fd ? Result<UniqueFd>(std::move(fd)) : Error::sys(errno, "open", dir);
  }
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd up, parent_dir(ws, dir));
  if (::mkdirat(up.get(), name_of(dir).c_str(), 0755) != 0 && errno != EEXIST) {
    return Error::sys(errno, "mkdir", dir);
  }
  fd = open_beneath(ws, dir, O_RDONLY | O_DIRECTORY);
  return fd ? Result<UniqueFd>(std::move(fd)) : Error::sys(errno, "open", dir);
}

// Removes `name` in `dir` and everything below it (directories made writable first: overlayfs
// leaves its work directory mode 000).
bool remove_tree(int dir, const char* name) {
  if (::unlinkat(dir, name, 0) == 0 || errno == ENOENT) {
    return true;
  }
  if (errno != EISDIR && errno != EPERM) {
    return false;
  }
  [[maybe_unused]] int rc = ::fchmodat(dir, name, 0700, 0);  // best effort: open says the rest
  int fd = ::openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return false;
  }
  bool ok = true;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") {
      ok = remove_tree(::dirfd(d), n.c_str()) && ok;
    }
  }
  ::closedir(d);
  return ::unlinkat(dir, name, AT_REMOVEDIR) == 0 && ok;
}

bool changed_since(const struct stat& st, const struct timespec& start) {
  return st.st_ctim.tv_sec > start.tv_sec ||
         (st.st_ctim.tv_sec == start.tv_sec && st.st_ctim.tv_nsec >= start.tv_nsec);
}

base::Status copy_into(int src, int parent, const std::string& name, mode_t mode) {
  std::string tmp = fmt::format(".{}.agentbox-apply-{}", name, ::getpid());
  UniqueFd out(::openat(parent, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) {
    return Error::sys(errno, "create", tmp);
  }
  std::array<char, 1 << 16> buf{};
  for (;;) {
    ssize_t n = base::retry_eintr([&] { return ::read(src, buf.data(), buf.size()); });
    if (n < 0) {
      int e = errno;
      ::unlinkat(parent, tmp.c_str(), 0);
      return Error::sys(e, "read", name);
    }
    if (n == 0) {
      break;
    }
    if (auto w = base::write_all(out.get(), std::string_view(buf.data(), size_t(n))); !w) {
      ::unlinkat(parent, tmp.c_str(), 0);
      return w;
    }
  }
  // Permission bits only: a set-id bit made in the box never lands.
  if (::fchmod(out.get(), mode & 0777) != 0 ||
      ::renameat(parent, tmp.c_str(), parent, name.c_str()) != 0) {
    int e = errno;
    ::unlinkat(parent, tmp.c_str(), 0);
    return Error::sys(e, "rename over", name);
  }
  return {};
}

// The last directory opened beneath a root (openat2, as open_beneath), kept open.
class DirCache {
 public:
  // The fd of `dir` beneath `root`, or -1 with errno.
  int open(int root, const std::string& dir) {
    if (fd_ && dir == dir_) {
      return fd_.get();
    }
    UniqueFd fd = open_beneath(root, dir, O_RDONLY | O_DIRECTORY);
    return fd ? keep(dir, std::move(fd)) : -1;
  }
  int keep(const std::string& dir, UniqueFd fd) {
    dir_ = dir;
    fd_ = std::move(fd);
    return fd_.get();
  }

 private:
  std::string dir_;
  UniqueFd fd_;
};

// linux/xattr syscalls by directory and name (Linux 6.13; glibc 2.36 has no wrapper): a file's
// extended attributes without opening it (an open, fstat and close per file saved). The numbers
// are the same on every architecture (the generic table).
constexpr long kListxattrat = 465;
constexpr long kRemovexattrat = 466;

// Removes overlayfs' own attributes (user.overlay.*; a copy-up leaves user.overlay.origin) from
// `name` in `dir`; false when it has any other one (a copy would not carry it) or on an error.
bool strip_overlay_xattrs(int dir, const char* name) {
  std::array<char, 4096> names{};
  ssize_t n = ::syscall(kListxattrat, dir, name, AT_SYMLINK_NOFOLLOW, names.data(), names.size());
  bool by_name = n >= 0 || (errno != ENOSYS && errno != ENOTSUP);
  UniqueFd fd;
  if (!by_name) {  // an older kernel: through a descriptor
    fd = UniqueFd(::openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    n = fd ? ::flistxattr(fd.get(), names.data(), names.size()) : -1;
    if (n < 0 && fd && errno == ENOTSUP) {
      return true;
    }
  }
  if (n < 0) {
    return false;
  }
  for (ssize_t i = 0; i < n;) {
    const char* x = names.data() + i;
    if (std::strncmp(x, "user.overlay.", 13) != 0 ||
        (by_name ? ::syscall(kRemovexattrat, dir, name, AT_SYMLINK_NOFOLLOW, x)
                 : ::fremovexattr(fd.get(), x)) != 0) {
      return false;
    }
    i += ssize_t(std::strlen(x)) + 1;
  }
  return true;
}

// Moves the upper file `name` itself into place: one rename, no copy, no temporary, and the
// upper entry leaves in the same step, where a copy costs a new file and the removal of the
// upper one. An existing file is first linked under `keep` (the review's `replaced/` tree),
// then the upper file is renamed over it (atomic); where the link is refused (another owner's
// file under fs.protected_hardlinks) the two are exchanged instead and the replaced one moved to
// `keep`. Either way the replaced file is kept: no inode is freed during the apply (on a loaded
// ext4 each free waits on the journal for milliseconds: docs/BENCHMARKS.md), and the old bytes
// stay until `discard`. A link and a rename cost a third less than an exchange and a rename
// (fewer directory-entry searches). Only a file that is then the same as a copy would be: a
// single link, owned by the caller, no extended attribute but overlayfs' own (removed), mode
// bits only, the time stamped now (a build must see it as new). The scan's facts about the upper
// file (`c`) stand: the box has ended and the session is locked. false: nothing moved, copy it.
bool move_into(const Change& c, int up_parent, int parent, const std::string& name,
               const struct stat* real, int keep) {
  static const uid_t euid = ::geteuid();
  const char* n = name.c_str();
  if (c.type != EntryType::kFile || c.nlink != 1 || c.uid != euid ||
      (real != nullptr && S_ISDIR(real->st_mode)) || !strip_overlay_xattrs(up_parent, n)) {
    return false;
  }
  if (((c.mode & 07000) != 0 && ::fchmodat(up_parent, n, c.mode & 0777, 0) != 0) ||
      ::utimensat(up_parent, n, nullptr, AT_SYMLINK_NOFOLLOW) != 0) {
    return false;
  }
  if (real == nullptr || keep < 0) {
    return ::renameat(up_parent, n, parent, n) == 0;
  }
  if (::linkat(parent, n, keep, n, 0) == 0) {
    if (::renameat(up_parent, n, parent, n) == 0) {
      return true;
    }
    ::unlinkat(keep, n, 0);  // the real file is still linked where it was
    return false;
  }
  if (::renameat2(up_parent, n, parent, n, RENAME_EXCHANGE) != 0) {
    return false;
  }
  // The upper name now holds the replaced file: it must leave the upper tree either way.
  if (::renameat(up_parent, n, keep, n) != 0) {
    ::unlinkat(up_parent, n, 0);
  }
  return true;
}

class Applier {
 public:
  Applier(const Review& r, const ApplyOptions& o, int ws, int up)
      : r_(r), o_(o), ws_(ws), up_(up) {}

  void one(const Change& c, ApplyResult& res) {
    if (!o_.paths.empty() && !selected(c.path, o_.paths)) {
      return;
    }
    if (!c.danger.empty() &&
        std::find(o_.paths.begin(), o_.paths.end(), c.path) == o_.paths.end()) {
      res.held.push_back(fmt::format("{}: {}", shown(c.path), c.danger));
      return;
    }
    if (c.type == EntryType::kOther) {
      res.refused.push_back(
          fmt::format("{}: a special file (fifo, socket, device)", shown(c.path)));
      return;
    }
    struct stat st {};
    int parent = ws_dir_.open(ws_, dir_of(c.path));
    bool exists =
        parent >= 0 && ::fstatat(parent, name_of(c.path).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) {
      res.refused.push_back(fmt::format("{}: {} in the workspace ({})", shown(c.path),
                                        std::strerror(errno),
                                        errno == ELOOP ? "a symlink on the way" : "open"));
      return;
    }
    if (exists && !S_ISDIR(st.st_mode) && !o_.force && changed_since(st, r_.started)) {
      res.refused.push_back(fmt::format(
          "{}: changed in the workspace since the session started (--force applies it anyway)",
          shown(c.path)));
      return;
    }
    if (auto s = write(c, exists ? &st : nullptr); !s) {
      res.refused.push_back(fmt::format("{}: {}", shown(c.path), shown(s.error().message())));
      return;
    }
    if (c.kind == ChangeKind::kDeleted) {
      ws_dir_ = {};  // the directory cached may be the one removed
    }
    if (!moved_) {
      forget(c);
    }
    res.applied.push_back(shown(c.path));
  }

 private:
  base::Status write(const Change& c, const struct stat* real) {
    moved_ = false;
    int parent = ws_dir_.open(ws_, dir_of(c.path));
    if (parent < 0) {
      AGENTBOX_ASSIGN_OR_RETURN(UniqueFd made, parent_dir(ws_, c.path));
      parent = ws_dir_.keep(dir_of(c.path), std::move(made));
    }
    const std::string name = name_of(c.path);
    if (c.kind == ChangeKind::kDeleted) {
      return remove_tree(parent, name.c_str()) ? base::Status{}
                                               : Error::sys(errno, "remove", c.path);
    }
    switch (c.type) {
      case EntryType::kDir:
        if (::mkdirat(parent, name.c_str(), c.mode & 0777) != 0 && errno != EEXIST) {
          return Error::sys(errno, "mkdir", c.path);
        }
        return chmod_at(parent, name, c.mode);
      case EntryType::kSymlink: {
        std::string tmp = fmt::format(".{}.agentbox-apply-{}", name, ::getpid());
        if (::symlinkat(c.link.c_str(), parent, tmp.c_str()) != 0 ||
            ::renameat(parent, tmp.c_str(), parent, name.c_str()) != 0) {
          int e = errno;
          ::unlinkat(parent, tmp.c_str(), 0);
          return Error::sys(e, "symlink", c.path);
        }
        return {};
      }
      case EntryType::kFile: {
        if (c.kind == ChangeKind::kMode) {
          return chmod_at(parent, name, c.mode);
        }
        int up_parent = up_dir_.open(up_, dir_of(c.path));
        moved_ = up_parent >= 0 && move_into(c, up_parent, parent, name, real, keep_dir(c.path));
        if (moved_) {
          return {};
        }
        UniqueFd src(up_parent < 0 ? -1
                                   : ::openat(up_parent, name.c_str(),
                                              O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (!src) {
          return Error::sys(errno, "open", r_.upper + "/" + c.path);
        }
        return copy_into(src.get(), parent, name, c.mode);
      }
      case EntryType::kOther:
        break;
    }
    return Error::msg("a special file");
  }

  static base::Status chmod_at(int parent, const std::string& name, mode_t mode) {
    UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd || ::fchmod(fd.get(), mode & 0777) != 0) {
      return Error::sys(errno, "chmod", name);
    }
    return {};
  }

  // What was applied leaves the upper directory, so diff shows only what is left. Directories
  // stay (they may hold changes not applied); they now equal the real ones.
  void forget(const Change& c) {
    if (c.type == EntryType::kDir && c.kind != ChangeKind::kDeleted) {
      return;
    }
    if (int p = up_dir_.open(up_, dir_of(c.path)); p >= 0) {
      ::unlinkat(p, name_of(c.path).c_str(), 0);
    }
  }

  // root/replaced/DIR for `rel` (made on the way), or -1.
  int keep_dir(const std::string& rel) {
    const std::string dir = "replaced/" + dir_of(rel);
    int fd = keep_.open(root_.get(), dir);
    if (fd >= 0 || !root_) {
      return fd;
    }
    UniqueFd at(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
    for (size_t i = 0; at && i != std::string::npos;) {
      size_t j = dir.find('/', i);
      std::string part = dir.substr(i, j == std::string::npos ? std::string::npos : j - i);
      i = j == std::string::npos ? j : j + 1;
      if (part == ".") {
        continue;
      }
      ::mkdirat(at.get(), part.c_str(), 0700);
      at = UniqueFd(
          ::openat(at.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    return at ? keep_.keep(dir, std::move(at)) : -1;
  }

  const Review& r_;
  const ApplyOptions& o_;
  int ws_;
  int up_;
  DirCache ws_dir_;  // the last parent directory, in the workspace and in the upper one: a
  DirCache up_dir_;  // session's changes come directory by directory (10,000 opens saved)
  DirCache keep_;
  UniqueFd root_{::open(r_.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  bool moved_ = false;
};

}  // namespace

Result<ApplyResult> apply(const Review& r, const ApplyOptions& opts) {
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd lock, lock_review(r));
  AGENTBOX_ASSIGN_OR_RETURN(std::vector<Change> changes, scan(r));
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd ws,
                            base::open_fd(r.workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd up,
                            base::open_fd(r.upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Applier a(r, opts, ws.get(), up.get());
  ApplyResult res;
  // Additions parents first, deletions children first.
  for (const auto& c : changes) {
    if (c.kind != ChangeKind::kDeleted) {
      a.one(c, res);
    }
  }
  for (auto it = changes.rbegin(); it != changes.rend(); ++it) {
    if (it->kind == ChangeKind::kDeleted) {
      a.one(*it, res);
    }
  }
  return res;
}

base::Status discard(const Review& r) {
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd lock, lock_review(r));
  std::string parent = dir_of(r.root);
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd dir,
                            base::open_fd(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!remove_tree(dir.get(), name_of(r.root).c_str())) {
    return Error::sys(errno, "remove", r.root);
  }
  return {};
}

}  // namespace agentbox::app
