// agentbox-fsmonitor: git's fsmonitor hook (protocol 2) inside a review box, answered from the
// session's upper directory (docs/REVIEW.md, "git status: an fsmonitor from the upper directory").
//
//   agentbox-fsmonitor 2 TOKEN        (run by git, in the work tree's top directory)
//
// Theory of operation. In a review box the workspace is overlayfs over the real one, and every
// write of the session lands in the upper directory; the lower one (the real workspace) does not
// change under a mounted overlay (overlayfs' contract). So a path that is not in the upper
// directory is, in the box, what it was when the session started, and git need not lstat() it
// again once it checked it during this session. The hook:
//   1. reads the session's token and the workspace's path (kSession, written by the supervisor);
//   2. answers "everything changed" (`/`) unless git's TOKEN is this session's (an index written
//      elsewhere: the host's, a watchman's, git's first timestamp token), unless git runs in the
//      workspace, or when anything cannot be read (never a partial answer);
//   3. otherwise lists every path in the upper directory below the work tree: files, symlinks,
//      whiteouts (deletions) and directories; each non-directory also as `PATH/` and each opaque
//      directory as `PATH/`, so git invalidates every index entry below a directory that became a
//      file or was emptied and made again. Paths are NUL-terminated after the token.
// The answer is cumulative (everything the session changed, not only since TOKEN), a superset of
// what changed since any index this session wrote: that is what makes one token per session safe.
// It only reads: no file is written, nothing is kept between runs.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <string>
#include <string_view>

namespace {

// Where the supervisor shows them in the box (app/session_review.cpp), read-only.
constexpr const char* kSession = "/etc/agentbox/review/session";  // TOKEN\nWORKSPACE\n
constexpr const char* kUpper = "/etc/agentbox/review/upper";
// git 2.39 walks its whole index for each `PATH/` line (fsmonitor_refresh_callback): past this
// many, answering "everything changed" (one lstat per entry) costs git less.
constexpr size_t kMaxPrefixes = 1000;

struct Answer {
  std::string out;      // NUL-terminated paths
  size_t prefixes = 0;  // `PATH/` lines
  bool failed = false;  // something unreadable: answer "everything changed"
};

void add(Answer& a, const std::string& path, bool prefix) {
  a.out.append(path);
  a.out.push_back('\0');
  if (prefix) {
    a.out.append(path);
    a.out.append("/", 2);  // the slash and its NUL
    ++a.prefixes;
  }
  if (a.prefixes > kMaxPrefixes) {
    a.failed = true;
  }
}

bool opaque(int dirfd) {
  char v[4];
  // Review mode mounts with userxattr (mount_plan.cpp): the only opaque marker is this one.
  return ::fgetxattr(dirfd, "user.overlay.opaque", v, sizeof v) >= 0;
}

// Lists the tree under `dirfd` (the upper directory of work-tree path `rel`, "" at the top).
void walk(int dirfd, const std::string& rel, Answer& a) {
  DIR* d = ::fdopendir(dirfd);
  if (d == nullptr) {
    ::close(dirfd);
    a.failed = true;
    return;
  }
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == ".." || (rel.empty() && name == ".git") || a.failed) {
      continue;  // git never tracks .git, nor lists it as untracked
    }
    std::string path = rel.empty() ? std::string(name) : rel + "/" + std::string(name);
    unsigned char type = e->d_type;
    if (type == DT_UNKNOWN) {
      struct stat st {};
      if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        a.failed = true;
        break;
      }
      type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
    }
    if (type != DT_DIR) {
      add(a, path, true);  // a whiteout, or a file where the real tree may have a directory
      continue;
    }
    int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      a.failed = true;
      break;
    }
    add(a, path, opaque(sub));
    walk(sub, path, a);
  }
  ::closedir(d);
}

// The work tree's path below the workspace ("" when they are one), or false when git runs
// outside the workspace or the upper directory hides the work tree's top itself (a whiteout or
// an opaque directory on its way).
bool work_tree_below(const std::string& workspace, std::string& rel) {
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof cwd) == nullptr) {
    return false;
  }
  std::string_view c = cwd;
  if (c == workspace) {
    rel.clear();
    return true;
  }
  if (!c.starts_with(workspace) || c.size() <= workspace.size() || c[workspace.size()] != '/') {
    return false;
  }
  rel = std::string(c.substr(workspace.size() + 1));
  for (size_t at = 0; at != std::string::npos;) {
    at = rel.find('/', at + 1);
    std::string up = std::string(kUpper) + "/" + rel.substr(0, at);
    int fd = ::open(up.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) {
      return true;  // not in the upper directory: nothing below it changed
    }
    struct stat st {};
    bool hidden = fd < 0 || ::fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || opaque(fd);
    if (fd >= 0) {
      ::close(fd);
    }
    if (hidden) {
      return false;
    }
  }
  return true;
}

bool read_session(std::string& token, std::string& workspace) {
  int fd = ::open(kSession, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  char buf[PATH_MAX + 256];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  std::string_view s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  size_t nl = s.find('\n');
  size_t nl2 = nl == std::string_view::npos ? nl : s.find('\n', nl + 1);
  if (nl2 == std::string_view::npos || nl == 0 || nl2 == nl + 1) {
    return false;
  }
  token = std::string(s.substr(0, nl));
  workspace = std::string(s.substr(nl + 1, nl2 - nl - 1));
  return true;
}

bool write_all(std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(STDOUT_FILENO, s.data(), s.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string token;
  std::string workspace;
  if (argc != 3 || std::string_view(argv[1]) != "2" || !read_session(token, workspace)) {
    return 1;  // git then checks every entry itself
  }
  Answer a;
  std::string rel;
  if (std::string_view(argv[2]) != token || !work_tree_below(workspace, rel)) {
    a.failed = true;
  } else {
    std::string top = rel.empty() ? std::string(kUpper) : std::string(kUpper) + "/" + rel;
    int fd = ::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      walk(fd, "", a);
    } else if (errno != ENOENT) {
      a.failed = true;
    }
  }
  std::string reply = token;
  reply.push_back('\0');
  reply.append(a.failed ? std::string_view("/", 2) : std::string_view(a.out));
  return write_all(reply) ? 0 : 1;
}
