// The program's installation: where the command resolves on the caller's PATH, and what of it the
// box must be shown (read-only) so that it runs there too.
//
// Users install agents under HOME (npm's prefix, nvm, volta, bun, claude's native installer in
// ~/.local/bin), which the box replaces by an empty tmpfs: the command would not be found (127).
// Before the box starts, the command is looked up on the caller's PATH as execvp would; each
// launcher link on the way is recreated in the box, the real file is shown read-only with its
// installation (the npm package directory, or the whole hoisted node_modules of a bun or pnpm
// global install, or VOLTA_HOME for a volta shim), and the interpreter its `#!` line names
// (`env node`: node as found on the caller's PATH) the same way. The directories it was found in
// go in front of the box's PATH. Nothing else of HOME is shown.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace agentbox::app {

struct ProgramLink {
  std::string path;  // where the link is, a real directory + name
  std::string text;  // what it says (recreated as is)
};

struct ProgramInstall {
  std::vector<ProgramLink> links;       // launcher links to recreate in the box
  std::vector<std::string> shown;       // real files and directories shown read-only
  std::vector<std::string> path_dirs;   // put in front of the box's PATH, in the caller's order
  std::vector<std::string> pass_env;    // caller variables the installation reads (VOLTA_HOME)
  std::vector<std::string> resolution;  // what was found, for -v and `explain`: "claude -> ..."
  [[nodiscard]] bool empty() const { return links.empty() && shown.empty() && path_dirs.empty(); }
};

// Resolves `command` (argv[0]) for the box. `visible` are the trees the box shows anyway (system
// trees, the workspace, grants): nothing inside them is added. `default_path` is the box's PATH
// without additions. A command that is not found changes nothing (the box reports 127).
[[nodiscard]] ProgramInstall resolve_program(const std::string& command,
                                             const std::map<std::string, std::string>& env,
                                             const std::string& cwd,
                                             const std::vector<std::string>& visible,
                                             const std::string& default_path);

// One line per addition: "shown read-only: PATH", "link: PATH -> TEXT", "PATH: DIR in front".
[[nodiscard]] std::vector<std::string> describe(const ProgramInstall& p);

}  // namespace agentbox::app
