// The session-end scan for planted git metadata (see git_scan.hpp for what and why).
#include "agentbox/sandbox/git_scan.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "agentbox/base/unique_fd.hpp"
#include "agentbox/sandbox/git_meta.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::sandbox {

const char* git_finding_name(GitFinding::Kind k) {
  switch (k) {
    case GitFinding::Kind::kRepository:
      return "repository";
    case GitFinding::Kind::kGitfile:
      return "gitfile";
    case GitFinding::Kind::kGitlink:
      return "gitlink";
    case GitFinding::Kind::kConfigKey:
      return "config";
    case GitFinding::Kind::kHook:
      return "hook";
    case GitFinding::Kind::kCommondir:
      return "commondir";
  }
  return "?";
}

namespace {

constexpr size_t kMaxEntries = 2'000'000;  // a large monorepo with node_modules; bounded
constexpr size_t kMaxDepth = 64;

bool changed_since(const std::string& path, time_t since) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && st.st_ctim.tv_sec >= since;
}

// Made during the session: the birth time where the filesystem keeps one (a repository the user
// had is not "new" because git ran in it and touched its directory), else the ctime.
bool born_since(const std::string& path, time_t since) {
  struct statx sx {};
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BTIME | STATX_CTIME, &sx) != 0) {
    return false;
  }
  return ((sx.stx_mask & STATX_BTIME) != 0 ? sx.stx_btime.tv_sec : sx.stx_ctime.tv_sec) >= since;
}

std::string shorten(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') {
      c = ' ';
    }
  }
  return s.size() > 160 ? s.substr(0, 157) + "..." : s;
}

class Scanner {
 public:
  Scanner(std::string workspace, std::string own, time_t since, std::string session)
      : ws_(std::move(workspace)),
        own_(std::move(own)),
        since_(since),
        session_(std::move(session)) {}

  GitScan run() {
    walk();
    gitlinks();
    return std::move(out_);
  }

 private:
  void add(GitFinding::Kind k, std::string path, std::string detail) {
    out_.findings.push_back({k, std::move(path), shorten(std::move(detail)), ""});
  }

  // What in git directory `g` runs code and was written during the session (all of it when
  // the repository itself is new). Returns how many such findings.
  size_t check_gitdir(const std::string& g, bool fresh) {
    size_t n = 0;
    for (const char* f : {"config", "config.worktree"}) {
      std::string p = g + "/" + f;
      if (!fresh && !changed_since(p, since_)) {
        continue;
      }
      for (const auto& e : parse_git_config(read_small_file(p))) {
        if (git_key_runs_code(e.key, e.value)) {
          add(GitFinding::Kind::kConfigKey, p, e.key + " = " + e.value);
          ++n;
        }
      }
    }
    if (std::string cd = g + "/commondir";
        (fresh || changed_since(cd, since_)) && ::access(cd.c_str(), F_OK) == 0) {
      add(GitFinding::Kind::kCommondir, cd, read_small_file(cd, 4096));
      ++n;
    }
    std::string hooks = g + "/hooks";
    base::UniqueFd hd(::open(hooks.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    DIR* d = hd ? ::fdopendir(hd.get()) : nullptr;
    if (d != nullptr) {
      (void)hd.release();  // owned by d now
      for (int k = 0; k < 4096; ++k) {
        struct dirent* e = ::readdir(d);
        if (e == nullptr) {
          break;
        }
        std::string name = e->d_name;
        std::string p = fmt::format("{}/{}", hooks, name);
        if (name == "." || name == ".." ||
            (name.size() > 7 && name.compare(name.size() - 7, 7, ".sample") == 0) ||
            (!fresh && !changed_since(p, since_))) {
          continue;
        }
        add(GitFinding::Kind::kHook, p, "hook `" + name + "`");
        ++n;
      }
      ::closedir(d);
    }
    return n;
  }

  // `entry` makes `parent` a repository (`.git`, or a bare one's `HEAD`); renamed aside.
  void quarantine(const std::string& parent, const std::string& entry, size_t first) {
    base::UniqueFd pd(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    std::string to = fmt::format("{}.agentbox-quarantined-{}", entry, session_);
    if (pd && ::renameat2(pd.get(), entry.c_str(), pd.get(), to.c_str(), RENAME_NOREPLACE) == 0) {
      for (size_t i = first; i < out_.findings.size(); ++i) {
        out_.findings[i].quarantined_as = fmt::format("{}/{}", parent, to);
      }
    }
  }

  void repository(const std::string& parent, const std::string& entry, const std::string& g,
                  bool gitfile) {
    std::string at = parent + "/" + entry;
    bool fresh = born_since(at, since_);
    size_t first = out_.findings.size();
    if (fresh) {
      add(gitfile ? GitFinding::Kind::kGitfile : GitFinding::Kind::kRepository, at,
          gitfile ? "gitdir: " + g : "a git repository appeared");
    }
    size_t code = 0;
    if (!g.empty() && g != own_ && path_within(g, ws_)) {
      code = check_gitdir(g, fresh);
    }
    if (fresh && code > 0) {
      quarantine(parent, entry, first);
    }
  }

  void walk() {
    std::vector<std::pair<std::string, size_t>> todo = {{ws_, 0}};
    while (!todo.empty()) {
      auto [dir, depth] = std::move(todo.back());
      todo.pop_back();
      base::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      DIR* d = fd ? ::fdopendir(fd.get()) : nullptr;
      if (d == nullptr) {
        continue;
      }
      (void)fd.release();
      bool head = false;
      std::vector<std::string> subdirs;
      while (struct dirent* e = ::readdir(d)) {
        if (++out_.entries > kMaxEntries) {
          out_.truncated = true;
          break;
        }
        std::string name = e->d_name;
        if (name == "." || name == "..") {
          continue;
        }
        unsigned char type = e->d_type;
        if (type == DT_UNKNOWN) {
          struct stat st {};
          type = ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ? DT_UNKNOWN
                 : S_ISDIR(st.st_mode)                                           ? DT_DIR
                 : S_ISREG(st.st_mode)                                           ? DT_REG
                                                                                 : DT_UNKNOWN;
        }
        std::string p = fmt::format("{}/{}", dir, name);
        if (name == ".git" && type == DT_DIR) {
          if (p != own_) {
            repository(dir, name, p, false);
          }
        } else if (name == ".git" && type == DT_REG) {
          if (dir != ws_) {
            std::string target = gitfile_target(read_small_file(p, 4096), dir);
            repository(dir, name, target, true);
          }
        } else if (type == DT_DIR && depth < kMaxDepth) {
          subdirs.push_back(p);
        } else if (name == "HEAD" && type == DT_REG) {
          head = true;
        }
      }
      ::closedir(d);
      if (head && dir != ws_ && is_bare(dir)) {
        repository_bare(dir);
        continue;  // a repository's insides are not walked
      }
      for (auto& s : subdirs) {
        todo.emplace_back(std::move(s), depth + 1);
      }
      if (out_.truncated) {
        return;
      }
    }
  }

  static bool is_bare(const std::string& dir) {
    struct stat a {};
    struct stat b {};
    return ::lstat((dir + "/objects").c_str(), &a) == 0 && S_ISDIR(a.st_mode) &&
           ::lstat((dir + "/refs").c_str(), &b) == 0 && S_ISDIR(b.st_mode);
  }

  void repository_bare(const std::string& dir) {
    bool fresh = born_since(dir + "/objects", since_);
    size_t first = out_.findings.size();
    if (fresh) {
      add(GitFinding::Kind::kRepository, dir, "a bare git repository appeared");
    }
    if (check_gitdir(dir, fresh) > 0 && fresh) {
      quarantine(dir, "HEAD", first);
    }
  }

  // Gitlinks in the workspace's index that .gitmodules (protected) does not register: the
  // outer git recurses into them. Only when the index changed during the session.
  void gitlinks() {
    if (own_.empty() || !changed_since(own_ + "/index", since_)) {
      return;
    }
    size_t oid = 20;
    std::vector<std::string> registered;
    for (const auto& e : parse_git_config(read_small_file(own_ + "/config"))) {
      if (e.key == "extensions.objectformat" && e.value == "sha256") {
        oid = 32;
      }
    }
    for (const auto& e : parse_git_config(read_small_file(ws_ + "/.gitmodules"))) {
      if (e.key.rfind("submodule.", 0) == 0 && e.key.size() > 5 &&
          e.key.compare(e.key.size() - 5, 5, ".path") == 0) {
        registered.push_back(e.value);
      }
    }
    std::string shared;
    auto links = index_gitlinks(read_small_file(own_ + "/index", 256u << 20), oid, &shared);
    if (!shared.empty()) {
      auto more = index_gitlinks(read_small_file(own_ + "/sharedindex." + shared, 256u << 20), oid);
      links.insert(links.end(), more.begin(), more.end());
    }
    std::sort(links.begin(), links.end());
    links.erase(std::unique(links.begin(), links.end()), links.end());
    for (const auto& l : links) {
      if (std::find(registered.begin(), registered.end(), l) == registered.end()) {
        add(GitFinding::Kind::kGitlink, ws_ + "/" + l,
            "gitlink `" + l + "` in the index, not registered in .gitmodules");
      }
    }
  }

  std::string ws_;
  std::string own_;
  time_t since_;
  std::string session_;
  GitScan out_;
};

}  // namespace

GitScan scan_git_plants(const std::string& workspace, const std::string& own_gitdir, time_t since,
                        const std::string& session) {
  return Scanner(workspace, own_gitdir, since, session).run();
}

}  // namespace agentbox::sandbox
