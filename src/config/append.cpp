// Appending an allow rule to the user's config file (append.hpp).
#include "agentbox/config/append.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "agentbox/base/unique_fd.hpp"

namespace agentbox::config {

using base::Error;

namespace {

constexpr size_t kMaxFile = 1 << 20;  // a config file larger than this is not ours to touch

// A rule is a host pattern with an optional port: nothing TOML would need to escape.
bool plain(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_' ||
           c == ':' || c == '*';
  });
}

base::Result<std::string> read_small(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return errno == ENOENT ? base::Result<std::string>(std::string())
                           : Error::sys(errno, "open", path);
  }
  std::ostringstream s;
  s << in.rdbuf();
  if (s.str().size() > kMaxFile) {
    return Error::msg(fmt::format("{} is larger than 1 MiB", path));
  }
  return s.str();
}

base::Status make_parent(const std::string& path) {
  size_t slash = path.rfind('/');
  for (size_t i = 1; slash != std::string::npos && i <= slash; ++i) {
    if (i == slash || path[i] == '/') {
      std::string dir = path.substr(0, i);
      if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        return Error::sys(errno, "mkdir", dir);
      }
    }
  }
  return base::ok();
}

}  // namespace

std::string user_config_file(const std::string& xdg_config_home, const std::string& home) {
  if (!xdg_config_home.empty() && xdg_config_home[0] == '/') {
    return xdg_config_home + "/agentbox/config.toml";
  }
  if (!home.empty() && home[0] == '/') {
    return home + "/.config/agentbox/config.toml";
  }
  return {};
}

base::Status append_allow(const std::string& path, const std::string& rule,
                          const std::string& comment) {
  if (!plain(rule)) {
    return Error::msg(fmt::format("`{}` is not a plain host rule", rule));
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string before, read_small(path));
  std::string add = fmt::format("{}\n# {}\n[[network.allow]]\nhost = \"{}\"\n",
                                before.empty() || before.back() == '\n' ? "" : "\n", comment, rule);
  try {
    std::istringstream in(before + add);
    (void)toml::parse(in, path);
  } catch (const std::exception&) {
    return Error::msg(
               fmt::format("{} would not parse with a `[[network.allow]]` table appended", path))
        .hint(fmt::format("add \"{}\" to network.allow there yourself", rule));
  }
  AGENTBOX_TRY(make_parent(path));
  base::UniqueFd fd(
      ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) {
    return Error::sys(errno, "open", path);
  }
  if (::write(fd.get(), add.data(), add.size()) != static_cast<ssize_t>(add.size())) {
    return Error::sys(errno, "write", path);
  }
  if (::fsync(fd.get()) != 0) {
    return Error::sys(errno, "fsync", path);
  }
  return base::ok();
}

}  // namespace agentbox::config
