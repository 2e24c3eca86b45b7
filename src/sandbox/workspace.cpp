// Finds the workspace (the enclosing git repository) and the box's working directory.
#include "agentbox/sandbox/workspace.hpp"

#include <sys/stat.h>

#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::sandbox {

std::string detect_workspace(const std::string& cwd,
                             const std::function<bool(const std::string&)>& has_git) {
  std::string dir = cwd;
  while (true) {
    if (has_git(dir)) {
      return dir;
    }
    if (dir == "/" || dir.empty()) {
      return cwd;
    }
    auto pos = dir.rfind('/');
    dir = pos == 0 ? "/" : dir.substr(0, pos);
  }
}

bool dir_has_git(const std::string& dir) {
  struct stat st {};
  std::string p = dir == "/" ? "/.git" : dir + "/.git";
  return ::lstat(p.c_str(), &st) == 0 && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode));
}

std::string box_cwd(const std::string& cwd, const std::string& workspace) {
  return path_within(cwd, workspace) ? cwd : workspace;
}

std::string workspace_problem(const std::string& workspace, const std::string& home) {
  if (workspace == "/") {
    return "it is the root directory";
  }
  if (!home.empty() && path_within(home, workspace)) {
    return workspace == home ? "it is your home directory" : "it contains your home directory";
  }
  return {};
}

}  // namespace agentbox::sandbox
