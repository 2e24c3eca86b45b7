// `persist.answers`: the user's settings file with the profile's answers on top, read-only in the
// box (agent_answers.hpp; why a merged read-only file: config/answers.hpp).
#include "agentbox/app/agent_answers.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>

#include <cerrno>

#include "agentbox/app/agent_state.hpp"
#include "agentbox/base/sys.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/config/answers.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using base::UniqueFd;

namespace {

constexpr size_t kMaxUserFile = 4u << 20;

// The user's own file; empty when there is none. Links are followed: it is the user's file on the
// host (a dotfile manager's link), never one the box wrote.
Result<std::string> read_user_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) {
      return std::string();
    }
    return Error::sys(errno, "open", path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Error::sys(errno, "stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error::msg(fmt::format("`{}` is not a regular file", path));
  }
  return base::read_all(fd.get(), kMaxUserFile);
}

}  // namespace

Result<std::vector<sandbox::Overlay>> prepare_answers(
    const std::map<std::string, config::Sourced<std::string>>& answers, const std::string& home,
    const std::string& workspace, const std::string& session_dir) {
  std::vector<sandbox::Overlay> out;
  for (const auto& [file, a] : answers) {
    const std::string rel = home_relative(file);
    const auto format = config::answer_format(file);
    if (rel.empty() || !format) {
      return Error::msg(fmt::format("`{}` is not a .json or .toml file below ~/", file));
    }
    const std::string target = fmt::format("{}/{}", home, rel);
    auto existing = read_user_file(target);
    auto merged = existing ? config::merge_answers(*format, *existing, a.value, workspace)
                           : Result<std::string>(std::move(existing).error());
    if (!merged) {
      return std::move(merged).error().context(
          fmt::format("persist.answers ({}): merging into `{}`", a.origin.describe(), target));
    }
    std::string source = fmt::format("{}/answers-{}", session_dir, out.size());
    AGENTBOX_TRY(base::write_file(source, *merged, 0600));
    out.push_back({.target = target, .source = std::move(source)});
  }
  return out;
}

}  // namespace agentbox::app
