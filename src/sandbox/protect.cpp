// Placeholders for protected workspace paths that do not exist yet.
#include "agentbox/sandbox/protect.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "agentbox/base/unique_fd.hpp"

namespace agentbox::sandbox {

using base::Error;
using base::UniqueFd;

bool protected_is_dir(const std::string& rel) {
  if (!rel.empty() && rel.back() == '/') {
    return true;
  }
  return rel == ".git/hooks" || rel == ".vscode" || rel == ".idea" || rel == ".git";
}

namespace {

constexpr int kStashSlots = 8;

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

// Moves a stashed placeholder of the right kind to parent/name. True: it is there, pristine.
bool take_from_stash(int stash, int parent, const char* name, bool dir) {
  for (int i = 0; i < kStashSlots; ++i) {
    char slot[16];
    slot_name(slot, dir, i);
    if (::renameat2(stash, slot, parent, name, RENAME_NOREPLACE) != 0) {
      if (errno == ENOENT) {
        continue;
      }
      return false;  // EXDEV (the workspace is on another filesystem), EEXIST, ...
    }
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
bool return_to_stash(int stash, const Placeholders::Item& it) {
  for (int i = 0; i < kStashSlots; ++i) {
    char slot[16];
    slot_name(slot, it.dir, i);
    if (::renameat2(AT_FDCWD, it.path.c_str(), stash, slot, RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST) {
        continue;
      }
      return false;
    }
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
  UniqueFd stash;
  if (!stash_dir.empty() && !items.empty()) {
    (void)::mkdir(stash_dir.c_str(), 0700);  // EEXIST is the usual case
    stash = open_stash(stash_dir);
  }
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    struct stat st {};
    if (::lstat(it->path.c_str(), &st) != 0 || st.st_dev != it->dev || st.st_ino != it->ino) {
      continue;
    }
    if (stash && return_to_stash(stash.get(), *it)) {
      continue;
    }
    if (it->dir) {
      ::rmdir(it->path.c_str());  // fails (ENOTEMPTY) when someone put something there
    } else if (S_ISREG(st.st_mode) && st.st_size == 0) {
      ::unlink(it->path.c_str());
    }
  }
  items.clear();
}

base::Result<ProtectedSet> prepare_protected(const std::string& workspace,
                                             const std::vector<std::string>& rels,
                                             const std::string& stash_dir) {
  ProtectedSet out;
  out.placeholders.stash_dir = stash_dir;
  UniqueFd stash = open_stash(stash_dir);
  UniqueFd ws(::open(workspace.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!ws) {
    return Error::sys(errno, "open", workspace);
  }
  for (const auto& rel : rels) {
    auto parts = split(rel);
    if (parts.empty() || std::find(parts.begin(), parts.end(), "..") != parts.end()) {
      continue;
    }
    std::string prefix;
    bool done = false;
    for (size_t i = 0; i < parts.size() && !done; ++i) {
      prefix += (i ? "/" : "") + parts[i];
      bool last = i + 1 == parts.size();
      if (std::find(out.paths.begin(), out.paths.end(), prefix) != out.paths.end()) {
        break;  // already read-only as a whole
      }
      struct stat st {};
      if (::fstatat(ws.get(), prefix.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode) || (!S_ISDIR(st.st_mode) && !last)) {
          // A link (covered by init) or a file where a directory was expected (a worktree's
          // `.git` file): protect this component itself.
          out.paths.push_back(prefix);
          done = true;
        } else if (last) {
          out.paths.push_back(prefix);
        }
        continue;
      }
      if (errno != ENOENT) {
        return Error::sys(errno, "stat", fmt::format("{}/{}", workspace, prefix));
      }
      // Create the missing component in its (symlink-free) parent.
      std::string parent_rel = prefix.find('/') == std::string::npos
                                   ? std::string(".")
                                   : prefix.substr(0, prefix.rfind('/'));
      UniqueFd parent = open_beneath(ws.get(), parent_rel, O_PATH | O_DIRECTORY);
      if (!parent) {
        return Error::sys(errno, "open", fmt::format("{}/{}", workspace, parent_rel));
      }
      // A missing intermediate directory (`.git` outside a repository) is itself protected: a
      // read-only empty directory, so nothing can be created below it.
      bool dir = !last || protected_is_dir(rel);
      if (!last) {
        done = true;
        last = true;
      }
      int r = (stash && take_from_stash(stash.get(), parent.get(), parts[i].c_str(), dir)) ? 0
              : dir
                  ? ::mkdirat(parent.get(), parts[i].c_str(), 0755)
                  : [&] {
                      int fd = ::openat(parent.get(), parts[i].c_str(),
                                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                      if (fd >= 0) {
                        ::close(fd);
                      }
                      return fd < 0 ? -1 : 0;
                    }();
      if (r != 0) {
        return Error::sys(errno, dir ? "mkdir" : "create", fmt::format("{}/{}", workspace, prefix))
            .context("creating a placeholder for a protected path");
      }
      if (::fstatat(ws.get(), prefix.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        out.placeholders.items.push_back(
            {fmt::format("{}/{}", workspace, prefix), dir, st.st_dev, st.st_ino});
      }
      if (last) {
        out.paths.push_back(prefix);
      }
    }
  }
  std::sort(out.paths.begin(), out.paths.end());
  out.paths.erase(std::unique(out.paths.begin(), out.paths.end()), out.paths.end());
  return out;
}

}  // namespace agentbox::sandbox
