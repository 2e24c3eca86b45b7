// The box's environment, built from scratch: nothing of the caller's environment passes unless
// it is named here or by the policy.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace agentbox::sandbox {

inline constexpr const char* kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Who runs the box: the same uid/gid and names inside as outside.
struct UserInfo {
  unsigned uid = 0;
  unsigned gid = 0;
  std::string name;   // "alice" (or "user<uid>" when the uid has no passwd entry)
  std::string group;  // primary group name
  std::string gecos;
  std::string home;   // the real home path
  std::string shell;  // login shell when it exists in the box, else /bin/sh
};

struct EnvInputs {
  std::map<std::string, std::string> caller;  // the caller's environment
  UserInfo user;
  bool tty = false;               // the box has a terminal (pty)
  std::vector<std::string> pass;  // names passed through from the caller (policy.env)
  std::vector<std::pair<std::string, std::string>> set;  // fixed values (policy.setenv)
  // Directories put in front of kDefaultPath (the program's installation, program_install.hpp);
  // a PATH passed through or set by the policy wins over both.
  std::vector<std::string> path_prepend;
};

// "NAME=value" entries, sorted by name. PATH (path_prepend + kDefaultPath), HOME, USER, LOGNAME,
// SHELL, TERM, COLORTERM, LANG/LANGUAGE/LC_*, TZ from the caller when set; then `pass`, then `set`
// (which wins).
[[nodiscard]] std::vector<std::string> build_environment(const EnvInputs& in);

// Appends one git setting through git's own variables (GIT_CONFIG_COUNT, GIT_CONFIG_KEY_n,
// GIT_CONFIG_VALUE_n: read by each git at its start, written to no file), numbered after the
// ones the box already gets (the user's, passed through or set, then those added before).
void add_git_config(EnvInputs& in, const std::string& key, const std::string& value);

// Appends `env` to `in.set` (it wins over a pass-through of the same name). Git settings in it
// (GIT_CONFIG_KEY_n/VALUE_n, n from 0, and their GIT_CONFIG_COUNT) are renumbered after the
// user's, never replacing them.
void add_box_env(EnvInputs& in, const std::vector<std::pair<std::string, std::string>>& env);

// environ -> map (first occurrence of a name wins, as getenv does).
[[nodiscard]] std::map<std::string, std::string> parse_environ(char** envp);

// Synthesized /etc files: root, the user (when not root) and nobody.
[[nodiscard]] std::string make_etc_passwd(const UserInfo& u);
[[nodiscard]] std::string make_etc_group(const UserInfo& u);
[[nodiscard]] std::string make_etc_hosts(const std::string& hostname);

}  // namespace agentbox::sandbox
