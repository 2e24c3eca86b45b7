// Placeholders for protected workspace paths that do not exist yet.
#include "agentbox/sandbox/protect.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

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

void Placeholders::remove() noexcept {
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    struct stat st {};
    if (::lstat(it->path.c_str(), &st) != 0 || st.st_dev != it->dev || st.st_ino != it->ino) {
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

namespace {

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

base::Result<ProtectedSet> prepare_protected(const std::string& workspace,
                                             const std::vector<std::string>& rels) {
  ProtectedSet out;
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
      int r = dir ? ::mkdirat(parent.get(), parts[i].c_str(), 0755) : [&] {
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
