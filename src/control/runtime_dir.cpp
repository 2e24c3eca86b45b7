// The per-user folder of control sockets (runtime_dir.hpp).
#include "agentbox/control/runtime_dir.hpp"

#include <dirent.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>

namespace agentbox::control {

using base::Error;
using base::Result;

namespace {

bool ours(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid();
}

// A directory that is ours alone: not a link, owned by us, no group or other bits.
base::Status check_private(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return Error::sys(errno, "lstat", path);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Error::msg(fmt::format("`{}` is not a directory", path));
  }
  if (st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    return Error::msg(fmt::format("`{}` is owned by uid {} with mode {:04o}, not private to uid {}",
                                  path, st.st_uid, st.st_mode & 07777, ::geteuid()))
        .hint("remove it, or set XDG_RUNTIME_DIR to a folder of your own");
  }
  return {};
}

std::string base_dir(const std::map<std::string, std::string>& env) {
  auto it = env.find("XDG_RUNTIME_DIR");
  if (it != env.end() && !it->second.empty() && it->second[0] == '/' && ours(it->second)) {
    return it->second + "/agentbox";
  }
  std::string run = fmt::format("/run/user/{}", ::geteuid());
  if (ours(run)) {
    return run + "/agentbox";
  }
  return fmt::format("/tmp/agentbox-{}", ::geteuid());
}

bool is_short(const std::string& s) {
  return s.size() == 6 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

Result<std::string> runtime_dir(const std::map<std::string, std::string>& env, bool create) {
  std::string dir = base_dir(env);
  if (create && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::sys(errno, "mkdir", dir);
  }
  AGENTBOX_TRY(check_private(dir));
  return dir;
}

std::optional<std::string> short_id(const std::string& s) {
  if (is_short(s)) {
    return s;
  }
  // YYYYMMDDTHHMMSSZ-xxxxxx (session_dirs.hpp)
  if (s.size() == 23 && s[16] == '-' && is_short(s.substr(17))) {
    return s.substr(17);
  }
  return std::nullopt;
}

std::string socket_path(const std::string& dir, const std::string& short_id) {
  return fmt::format("{}/{}.sock", dir, short_id);
}

std::vector<std::string> list_sessions(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return out;
  }
  while (const struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() == 11 && name.ends_with(".sock") && is_short(name.substr(0, 6))) {
      out.push_back(name.substr(0, 6));
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace agentbox::control
