// Workspace detection: the git repository around the current directory, else the directory.
#pragma once

#include <functional>
#include <string>

namespace agentbox::sandbox {

// Walks up from `cwd` (absolute, canonical) looking for a `.git` entry (directory, or file as in
// worktrees and submodules); returns the first directory holding one, else `cwd` itself.
// `has_git` answers "does DIR/.git exist"; injected so tests need no filesystem.
[[nodiscard]] std::string detect_workspace(const std::string& cwd,
                                           const std::function<bool(const std::string&)>& has_git);
// The real-filesystem `has_git`.
[[nodiscard]] bool dir_has_git(const std::string& dir);

// The box's working directory: the caller's when it is inside the workspace, else the workspace.
[[nodiscard]] std::string box_cwd(const std::string& cwd, const std::string& workspace);

// Why `workspace` cannot be used (empty when fine): "/", the home directory or one of its
// ancestors (that would show the real home and its secrets inside the box).
[[nodiscard]] std::string workspace_problem(const std::string& workspace, const std::string& home);

}  // namespace agentbox::sandbox
