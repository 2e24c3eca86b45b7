// Session directories: the running session's flock, and pruning by count and age (issue 14).
#include "agentbox/app/session_dirs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "agentbox/base/sys.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;

namespace {

constexpr std::time_t kGraceSeconds = 60;  // a session between mkdir and flock

base::Status mkdir_p(const std::string& path, mode_t mode) {
  std::string cur;
  size_t i = 1;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) {
      j = path.size();
    }
    cur = path.substr(0, j);
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
      return Error::sys(errno, "mkdir", cur);
    }
    i = j + 1;
  }
  return base::ok();
}

enum class LockState { kNone, kHeld, kFree };

// kFree leaves the lock taken in `fd` until the caller closes it.
LockState try_lock_dir(const std::string& dir, base::UniqueFd& fd) {
  int raw = ::open((dir + "/lock").c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (raw < 0) {
    return LockState::kNone;
  }
  fd = base::UniqueFd(raw);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return LockState::kHeld;
  }
  return LockState::kFree;
}

}  // namespace

std::string new_session_id() {
  unsigned char rnd[3] = {};
  [[maybe_unused]] ssize_t n = ::getrandom(rnd, sizeof rnd, 0);
  std::time_t now = std::time(nullptr);
  struct tm tm {};
  ::gmtime_r(&now, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
  return fmt::format("{}-{:02x}{:02x}{:02x}", ts, rnd[0], rnd[1], rnd[2]);
}

std::time_t session_start(const std::string& name) {
  // YYYYMMDDTHHMMSSZ-xxxxxx
  if (name.size() != 23 || name[8] != 'T' || name[15] != 'Z' || name[16] != '-') {
    return -1;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    bool digit = name[i] >= '0' && name[i] <= '9';
    bool hex = digit || (name[i] >= 'a' && name[i] <= 'f');
    if ((i < 8 || (i > 8 && i < 15)) ? !digit : (i > 16 && !hex)) {
      return -1;
    }
  }
  struct tm tm {};
  if (::strptime(name.c_str(), "%Y%m%dT%H%M%SZ", &tm) == nullptr) {
    return -1;
  }
  return ::timegm(&tm);
}

Result<base::UniqueFd> make_session_dir(const std::string& dir) {
  AGENTBOX_TRY(mkdir_p(dir, 0700));
  int raw = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (raw < 0) {
    return Error::sys(errno, "open", dir + "/lock");
  }
  base::UniqueFd fd(raw);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return Error::sys(errno, "flock", dir + "/lock");
  }
  return fd;
}

Pruned prune_sessions(const std::string& root, const std::string& current, const Retention& r,
                      std::time_t now) {
  Pruned out;
  std::vector<std::pair<std::string, std::time_t>> dirs;  // name, start
  if (DIR* d = ::opendir(root.c_str()); d != nullptr) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      std::time_t start = session_start(name);
      struct stat st {};
      bool dir =
          e->d_type == DT_DIR ||
          (e->d_type == DT_UNKNOWN && ::lstat(fmt::format("{}/{}", root, name).c_str(), &st) == 0 &&
           S_ISDIR(st.st_mode));
      if (start >= 0 && dir) {
        dirs.emplace_back(std::move(name), start);
      }
    }
    ::closedir(d);
  }
  // Newest first: the id's timestamp, then the name (ids of one second differ by their tail).
  std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first > b.first;
  });
  for (size_t i = 0; i < dirs.size(); ++i) {
    const auto& [name, start] = dirs[i];
    bool old = now - start > static_cast<std::time_t>(r.max_age_seconds);
    if (name == current || (i < r.keep && !old)) {
      continue;
    }
    std::string path = fmt::format("{}/{}", root, name);
    base::UniqueFd lock;
    switch (try_lock_dir(path, lock)) {
      case LockState::kHeld:
        ++out.running;
        continue;
      case LockState::kNone:
        if (now - start < kGraceSeconds) {
          continue;
        }
        break;
      case LockState::kFree:
        break;
    }
    std::error_code ec;
    std::filesystem::remove_all(path, ec);  // symlinks inside are removed, never followed
    if (ec) {
      ++out.failed;
    } else {
      out.removed.push_back(name);
    }
  }
  return out;
}

}  // namespace agentbox::app
