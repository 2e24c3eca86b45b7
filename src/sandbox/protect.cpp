// Placeholders for protected workspace paths that do not exist yet.
#include "agentbox/sandbox/protect.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <set>

#include "agentbox/base/unique_fd.hpp"

namespace agentbox::sandbox {

using base::Error;
using base::UniqueFd;

bool protected_is_dir(const std::string& rel) {
  if (!rel.empty() && rel.back() == '/') {
    return true;
  }
  static const std::set<std::string> kDirs = {
      ".git",      ".git/hooks", ".git/modules",  ".git/worktrees", ".vscode",      ".idea",
      ".agentbox", ".claude",    ".claude/hooks", ".codex",         ".gemini",      ".cursor",
      ".windsurf", ".kiro",      ".continue",     ".husky",         ".devcontainer"};
  return kDirs.contains(rel);
}

std::string_view placeholder_content(const std::string& rel) {
  // git reads `commondir` whenever it exists and dies on an empty one; "." names the
  // repository's own .git (checked with git 2.39: status, commit, gc, worktree add).
  if (rel == ".git/commondir" || rel == "commondir") {  // the workspace's, a common dir's
    return ".\n";
  }
  return {};
}

namespace {

constexpr int kStashSlots = 24;  // the default set leaves ~20 placeholders in a fresh repo

// struct linux_dirent64 (the kernel's getdents64 record; glibc declares none).
struct linux_dirent64_view {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[1];
};

// The stash, if it exists and is ours alone (a stash others can write could hand us a non-empty
// "placeholder"; pristine() would catch it, but there is no reason to try).
UniqueFd open_stash(const std::string& dir) {
  if (dir.empty()) {
    return {};
  }
  UniqueFd fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    return {};
  }
  return fd;
}

void slot_name(char (&out)[16], bool dir, int i) {
  std::snprintf(out, sizeof out, "%c%d", dir ? 'd' : 'f', i);
}

bool dir_is_empty(int parent, const char* name) {
  UniqueFd d(::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d) {
    return false;
  }
  alignas(8) char buf[512];
  for (int round = 0; round < 4; ++round) {  // an empty directory is one short read; bounded
    long n = ::syscall(SYS_getdents64, d.get(), buf, sizeof buf);
    if (n < 0) {
      return false;
    }
    if (n == 0) {
      return true;
    }
    for (long off = 0; off < n;) {
      const auto* e = reinterpret_cast<const struct linux_dirent64_view*>(buf + off);
      const char* nm = buf + off + offsetof(linux_dirent64_view, d_name);
      if (std::strcmp(nm, ".") != 0 && std::strcmp(nm, "..") != 0) {
        return false;
      }
      off += e->d_reclen;
    }
  }
  return false;
}

// What a fresh placeholder is: ours, empty, one link, no set-id/sticky or group/other write bits.
bool pristine(int parent, const char* name, bool dir, ino_t* ino) {
  struct stat st {};
  if (::fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != ::geteuid() ||
      (st.st_mode & (S_ISUID | S_ISGID | S_ISVTX | S_IWGRP | S_IWOTH)) != 0) {
    return false;
  }
  *ino = st.st_ino;
  if (dir) {
    return S_ISDIR(st.st_mode) && dir_is_empty(parent, name);
  }
  return S_ISREG(st.st_mode) && st.st_size == 0 && st.st_nlink == 1;
}

// Sessions sharing a workspace share its placeholders (see protect.hpp): `ws-<hash>.reg` in the
// stash lists them ("dev ino d|f path" lines) and is flock'ed exclusively around every change;
// `ws-<hash>.alive` is flock'ed shared by every live session. The kernel drops both locks of a
// session that dies, however it dies.
std::string workspace_key(const std::string& workspace) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a: a file name, not a security boundary
  for (unsigned char c : workspace) {
    h = (h ^ c) * 1099511628211ULL;
  }
  return fmt::format("ws-{:016x}", h);
}

std::vector<Placeholders::Item> read_registry(int fd) {
  std::vector<Placeholders::Item> out;
  std::string text;
  char buf[4096];
  for (int i = 0; i < 64; ++i) {  // a few hundred bytes in practice; bounded
    ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(text.size()));
    if (n <= 0) {
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find('\n', i);
    if (j == std::string::npos) {
      break;
    }
    std::string line = text.substr(i, j - i);
    i = j + 1;
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    char kind = 0;
    int used = 0;
    if (std::sscanf(line.c_str(), "%llu %llu %c %n", &dev, &ino, &kind, &used) == 3 && used > 0 &&
        line[static_cast<size_t>(used)] == '/' && (kind == 'd' || kind == 'f')) {
      out.push_back({line.substr(static_cast<size_t>(used)), kind == 'd', static_cast<dev_t>(dev),
                     static_cast<ino_t>(ino)});
    }
  }
  return out;
}

void write_registry(int fd, const std::vector<Placeholders::Item>& items) {
  std::string text;
  for (const auto& it : items) {
    if (it.path.find('\n') == std::string::npos) {
      text += fmt::format("{} {} {} {}\n", static_cast<unsigned long long>(it.dev),
                          static_cast<unsigned long long>(it.ino), it.dir ? 'd' : 'f', it.path);
    }
  }
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] ssize_t n = ::pwrite(fd, text.data(), text.size(), 0);
  }
}

bool same_inode(const Placeholders::Item& it) {
  struct stat st {};
  return ::lstat(it.path.c_str(), &st) == 0 && st.st_dev == it.dev && st.st_ino == it.ino;
}

// Moves a stashed placeholder of the right kind to parent/name. True: it is there, pristine.
// Where the next search of the stash starts, per kind: the slots before it were found empty (a
// take) or full (a return) by this session, so N placeholders cost N renames, not N^2/2.
struct StashCursor {
  int dir = 0;
  int file = 0;
  int& operator[](bool is_dir) { return is_dir ? dir : file; }
};

bool take_from_stash(int stash, int parent, const char* name, bool dir, StashCursor& cursor) {
  for (int& i = cursor[dir]; i < kStashSlots; ++i) {
    char slot[16];
    slot_name(slot, dir, i);
    if (::renameat2(stash, slot, parent, name, RENAME_NOREPLACE) != 0) {
      if (errno == ENOENT) {
        continue;
      }
      return false;  // EXDEV (the workspace is on another filesystem), EEXIST, ...
    }
    ++i;  // taken: the next search starts after it
    ino_t ino = 0;
    if (pristine(parent, name, dir, &ino)) {
      return true;
    }
    char q[48];
    std::snprintf(q, sizeof q, "quarantine-%llu", static_cast<unsigned long long>(ino));
    (void)::renameat2(parent, name, stash, q, RENAME_NOREPLACE);  // else creating it fails below
    return false;
  }
  return false;
}

// Returns a placeholder to the stash. True: handled (stashed, or it was not ours after all and
// went back where it was); false: the caller deletes it as without a stash.
bool return_to_stash(int stash, const Placeholders::Item& it, StashCursor& cursor) {
  for (int& i = cursor[it.dir]; i < kStashSlots; ++i) {
    char slot[16];
    slot_name(slot, it.dir, i);
    if (::renameat2(AT_FDCWD, it.path.c_str(), stash, slot, RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST) {
        continue;
      }
      return false;
    }
    ++i;  // filled: the next search starts after it
    // Renamed by path: check it is still our empty inode (something written or swapped in on the
    // host during the session goes back where it was).
    ino_t ino = 0;
    if (!pristine(stash, slot, it.dir, &ino) || ino != it.ino) {
      (void)::renameat2(stash, slot, AT_FDCWD, it.path.c_str(), RENAME_NOREPLACE);
    }
    return true;
  }
  return false;
}

UniqueFd open_beneath(int dirfd, const std::string& rel, uint64_t flags) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof how)));
}

int create_file(int parent, const char* name, std::string_view content) {
  UniqueFd fd(::openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) {
    return -1;
  }
  if (!content.empty() &&
      ::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    return -1;
  }
  return 0;
}

// A placeholder file as we made it: empty, or holding exactly its fixed content.
bool inert_file(const std::string& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) {
    return false;
  }
  if (st.st_size == 0) {
    return true;
  }
  const std::string_view tail = "/commondir";
  if (path.size() < tail.size() ||
      path.compare(path.size() - tail.size(), tail.size(), tail) != 0 || st.st_size != 2) {
    return false;
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  char buf[2];
  return fd && ::read(fd.get(), buf, 2) == 2 && buf[0] == '.' && buf[1] == '\n';
}

std::vector<std::string> split(const std::string& rel) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < rel.size()) {
    size_t j = rel.find('/', i);
    if (j == std::string::npos) {
      j = rel.size();
    }
    if (j > i) {
      parts.push_back(rel.substr(i, j - i));
    }
    i = j + 1;
  }
  return parts;
}

}  // namespace

void Placeholders::remove() noexcept {
  std::vector<Item> todo = std::move(items);
  items.clear();
  if (registry_) {
    // Only the last live session of the workspace removes placeholders (its own and those that
    // dead or earlier sessions left): removing one that another box has mounted read-only would
    // make the kernel drop that mount (a mountpoint unlinked or renamed in another namespace is
    // detached) and the path writable in that box.
    (void)::flock(registry_.get(), LOCK_EX);
    bool last = alive_ && ::flock(alive_.get(), LOCK_EX | LOCK_NB) == 0;
    std::vector<Item> listed = read_registry(registry_.get());
    if (!last) {
      alive_.reset();
      registry_.reset();  // unlocks
      return;
    }
    for (auto& it : listed) {
      if (std::none_of(todo.begin(), todo.end(),
                       [&](const Item& t) { return t.path == it.path; })) {
        todo.push_back(std::move(it));
      }
    }
    std::sort(todo.begin(), todo.end(),
              [](const Item& a, const Item& b) { return a.path.size() < b.path.size(); });
    write_registry(registry_.get(), {});
  }
  UniqueFd stash;
  if (!stash_dir.empty() && !todo.empty()) {
    (void)::mkdir(stash_dir.c_str(), 0700);  // EEXIST is the usual case
    stash = open_stash(stash_dir);
  }
  StashCursor cursor;
  for (auto it = todo.rbegin(); it != todo.rend(); ++it) {  // deepest first
    struct stat st {};
    if (::lstat(it->path.c_str(), &st) != 0 || st.st_dev != it->dev || st.st_ino != it->ino) {
      continue;
    }
    if (stash && (it->dir || st.st_size == 0) && return_to_stash(stash.get(), *it, cursor)) {
      continue;
    }
    if (it->dir) {
      ::rmdir(it->path.c_str());  // fails (ENOTEMPTY) when someone put something there
    } else if (inert_file(it->path, st)) {
      ::unlink(it->path.c_str());
    }
  }
  alive_.reset();
  registry_.reset();
}

namespace {

// The stash directory, made with its parents on the first run under this state dir (0700, as
// the session folders); then opened if it is ours alone.
UniqueFd make_stash(const std::string& stash_dir) {
  if (!stash_dir.empty() && ::mkdir(stash_dir.c_str(), 0700) != 0 && errno == ENOENT) {
    for (size_t i = 1; i < stash_dir.size(); ++i) {
      if (stash_dir[i] == '/') {
        (void)::mkdir(stash_dir.substr(0, i).c_str(), 0700);
      }
    }
    (void)::mkdir(stash_dir.c_str(), 0700);
  }
  return open_stash(stash_dir);
}

// Joins the workspace's registry (locked exclusively until publish()) and its alive lock
// (shared, for the session's life). Returns the placeholders other sessions made here that are
// still where they were.
std::vector<Placeholders::Item> join_registry(int stash, const std::string& workspace,
                                              Placeholders& mine) {
  std::vector<Placeholders::Item> listed;
  std::string key = workspace_key(workspace);
  UniqueFd reg(
      ::openat(stash, (key + ".reg").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  UniqueFd alive(
      ::openat(stash, (key + ".alive").c_str(), O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (reg && alive && ::flock(reg.get(), LOCK_EX) == 0 && ::flock(alive.get(), LOCK_SH) == 0) {
    for (auto& it : read_registry(reg.get())) {
      if (same_inode(it)) {
        listed.push_back(std::move(it));
      }
    }
    mine.registry_ = std::move(reg);
    mine.alive_ = std::move(alive);
  }
  return listed;
}

// Resolves the protected paths of one workspace into `out`, making placeholders as it goes.
class PlaceholderMaker {
 public:
  PlaceholderMaker(const std::string& workspace, int ws, int stash, ProtectedSet& out,
                   std::vector<Placeholders::Item> listed)
      : workspace_(workspace), ws_(ws), stash_(stash), out_(out), listed_(std::move(listed)) {}

  // One protected path, component by component: the first that is read-only as a whole (a link,
  // a file where a directory was expected, a placeholder) ends it.
  base::Status add(const std::string& rel) {
    auto parts = split(rel);
    if (parts.empty() || std::find(parts.begin(), parts.end(), "..") != parts.end()) {
      return base::ok();
    }
    std::string prefix;
    for (size_t i = 0; i < parts.size(); ++i) {
      prefix += (i ? "/" : "") + parts[i];
      const bool last = i + 1 == parts.size();
      if (std::find(out_.paths.begin(), out_.paths.end(), prefix) != out_.paths.end()) {
        break;  // already read-only as a whole
      }
      struct stat st {};
      if (::fstatat(ws_, prefix.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (existing(prefix, last, st)) {
          break;
        }
        continue;
      }
      if (errno != ENOENT) {
        return Error::sys(errno, "stat", abs(prefix));
      }
      // A missing intermediate directory (`.git` outside a repository) is itself protected: a
      // read-only empty directory, so nothing can be created below it.
      AGENTBOX_TRY(create(prefix, parts[i], !last || protected_is_dir(rel)));
      break;
    }
    return base::ok();
  }

  // Others' placeholders this session did not need: they stay listed.
  const std::vector<Placeholders::Item>& unused() const { return listed_; }

 private:
  std::string abs(const std::string& prefix) const {
    return fmt::format("{}/{}", workspace_, prefix);
  }

  // A placeholder of another session (live, or killed before it could remove it): ours now too.
  bool adopt(const std::string& path) {
    auto it = std::find_if(listed_.begin(), listed_.end(),
                           [&](const Placeholders::Item& l) { return l.path == path; });
    if (it == listed_.end()) {
      return false;
    }
    out_.placeholders.items.push_back(*it);
    listed_.erase(it);
    return true;
  }

  // An existing component; true when it is protected as a whole (nothing below it to walk).
  bool existing(const std::string& prefix, bool last, const struct stat& st) {
    // An adopted placeholder is protected as a whole, as when we make one; a link (covered by
    // init) or a file where a directory was expected (a worktree's `.git` file): this component.
    if (adopt(abs(prefix)) || S_ISLNK(st.st_mode) || (!S_ISDIR(st.st_mode) && !last)) {
      out_.paths.push_back(prefix);
      return true;
    }
    if (last) {
      out_.paths.push_back(prefix);
    }
    return false;
  }

  // Creates the missing component `prefix` (named `name`) in its symlink-free parent, from the
  // stash when there is one, and protects it.
  base::Status create(const std::string& prefix, const std::string& name, bool dir) {
    std::string parent_rel = prefix.find('/') == std::string::npos
                                 ? std::string(".")
                                 : prefix.substr(0, prefix.rfind('/'));
    UniqueFd parent = open_beneath(ws_, parent_rel, O_PATH | O_DIRECTORY);
    if (!parent) {
      return Error::sys(errno, "open", abs(parent_rel));
    }
    std::string_view content = placeholder_content(prefix);
    int r = (stash_ >= 0 && content.empty() &&
             take_from_stash(stash_, parent.get(), name.c_str(), dir, cursor_))
                ? 0
            : dir ? ::mkdirat(parent.get(), name.c_str(), 0755)
                  : create_file(parent.get(), name.c_str(), content);
    if (r != 0) {
      return Error::sys(errno, dir ? "mkdir" : "create", abs(prefix))
          .context("creating a placeholder for a protected path");
    }
    struct stat st {};
    if (::fstatat(ws_, prefix.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      out_.placeholders.items.push_back({abs(prefix), dir, st.st_dev, st.st_ino});
    }
    out_.paths.push_back(prefix);
    return base::ok();
  }

  const std::string& workspace_;
  int ws_;
  int stash_;
  ProtectedSet& out_;
  std::vector<Placeholders::Item> listed_;  // placeholders other sessions made here
  StashCursor cursor_;
};

// Lists this session's placeholders with the others' still there, and unlocks the registry (the
// alive lock stays).
void publish(Placeholders& mine, const std::vector<Placeholders::Item>& others) {
  if (!mine.registry_) {
    return;
  }
  std::vector<Placeholders::Item> all = mine.items;
  all.insert(all.end(), others.begin(), others.end());
  write_registry(mine.registry_.get(), all);
  (void)::flock(mine.registry_.get(), LOCK_UN);
}

}  // namespace

base::Result<ProtectedSet> prepare_protected(const std::string& workspace,
                                             const std::vector<std::string>& rels,
                                             const std::string& stash_dir) {
  ProtectedSet out;
  out.placeholders.stash_dir = stash_dir;
  UniqueFd stash = make_stash(stash_dir);
  UniqueFd ws(::open(workspace.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!ws) {
    return Error::sys(errno, "open", workspace);
  }
  std::vector<Placeholders::Item> listed;
  if (stash) {
    listed = join_registry(stash.get(), workspace, out.placeholders);
  }
  PlaceholderMaker maker(workspace, ws.get(), stash ? stash.get() : -1, out, std::move(listed));
  for (const auto& rel : rels) {
    AGENTBOX_TRY(maker.add(rel));
  }
  publish(out.placeholders, maker.unused());
  std::sort(out.paths.begin(), out.paths.end());
  out.paths.erase(std::unique(out.paths.begin(), out.paths.end()), out.paths.end());
  return out;
}

}  // namespace agentbox::sandbox
